"""The pipeline's lock as a lease: lost answers, a holder killed, renewal, races."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from mlpipe.core.context import Context
from mlpipe.local.faults import Rule, injected
from mlpipe.ops.lock import LockHeld, LockLost, acquire, holders, operation_lock

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.at = T0

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


def test_a_lost_answer_to_the_lock_write_still_takes_it(ctx: Context) -> None:
    with injected(Rule("ssm:PutParameter", "lose")) as faults:
        with operation_lock(ctx, "apply") as lease:
            assert holders(ctx) == [lease.record]
        assert faults.counts()["lose"] == 1
    assert holders(ctx) == []
    with operation_lock(ctx, "next"):  # the next operation takes it at once
        pass


def test_a_lost_answer_to_the_release_still_frees_it(ctx: Context) -> None:
    with injected(Rule("ssm:DeleteParameter", "lose")) as faults:
        with operation_lock(ctx, "apply"):
            pass
        assert faults.counts()["lose"] == 1
    assert holders(ctx) == []
    with operation_lock(ctx, "next"):
        pass


def test_a_killed_holder_is_taken_over_once_its_lease_expires(ctx: Context) -> None:
    clock = Clock()
    lease_seconds = ctx.spec.models.lock_lease_seconds
    killed = acquire(ctx, "promote v2.0.0", now=clock)  # then SIGKILLed: never released
    clock.advance(lease_seconds - 1)
    with pytest.raises(LockHeld) as held:
        acquire(ctx, "traffic", now=clock)
    message = str(held.value)
    assert "promote v2.0.0 by arn:aws:" in message and "--force-unlock" in message
    assert "expires in 1s" in message

    clock.advance(2)
    said: list[str] = []
    ctx.progress = lambda key, text: said.append(text)
    successor = acquire(ctx, "traffic", now=clock)
    assert any("taking over an expired lease: promote v2.0.0" in s for s in said), said
    assert holders(ctx) == [successor.record]

    killed.renew()  # the old holder, had it only been paused, learns it lost the lock
    with pytest.raises(LockLost):
        killed.check()
    successor.release()
    assert holders(ctx) == []


def test_renewal_keeps_the_lease(ctx: Context) -> None:
    clock = Clock()
    lease = acquire(ctx, "apply", now=clock)
    clock.advance(100)
    lease.renew()
    clock.advance(100)  # 200s after it was taken, 100s after the renewal
    with pytest.raises(LockHeld):
        acquire(ctx, "traffic", now=clock)
    clock.advance(ctx.spec.models.lock_lease_seconds)
    acquire(ctx, "traffic", now=clock)


def test_the_background_thread_renews(ctx: Context) -> None:
    with operation_lock(ctx, "apply", renew_every=0.01) as lease:
        deadline = time.monotonic() + 5
        held = holders(ctx)[0]  # what Parameter Store holds, not the lease's own copy
        while held["renewedAt"] == held["acquiredAt"]:
            assert time.monotonic() < deadline, "the lease was never renewed"
            time.sleep(0.01)
            held = holders(ctx)[0]
        assert held["token"] == lease.token and held["renewedAt"] > held["acquiredAt"]


def test_of_two_callers_at_once_one_holds_the_lock(ctx: Context) -> None:
    start = threading.Barrier(2)
    won: list[str] = []
    refused: list[str] = []

    def take(name: str) -> None:
        start.wait()
        try:
            acquire(ctx, name)
            won.append(name)
        except LockHeld:
            refused.append(name)

    threads = [threading.Thread(target=take, args=(n,)) for n in ("first", "second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1 and len(refused) == 1


def test_force_unlock_says_who_held_it(ctx: Context) -> None:
    acquire(ctx, "destroy")
    said: list[str] = []
    ctx.progress = lambda key, text: said.append(text)
    lease = acquire(ctx, "apply", force_unlock=True)
    assert any(s.startswith("--force-unlock: taking over from destroy by arn:") for s in said)
    assert holders(ctx) == [lease.record]
