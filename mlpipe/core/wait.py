"""The one way mlpipe waits: poll until done, back off, give up at a deadline.

Every wait and every retry of an eventually consistent call goes through `poll`, with the
time source and the sleep of the run's `Clock` (tests pass a clock whose sleep only moves its
own time, so nothing waits for real). `wait_for` is the state-machine form of it, after
terraform-provider-aws's `retry.StateChangeConf`: pending states wait, target states end the
wait, any other state is a failure.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, TypeVar

from mlpipe.core.errors import MlpipeError

T = TypeVar("T")


@dataclass(frozen=True)
class Clock:
    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


@dataclass(frozen=True)
class Backoff:
    """Seconds between polls: `first`, doubled each time up to `cap`."""

    first: float = 0.5
    cap: float = 8.0


@dataclass
class Pending:
    """`poll`'s answer while not done: the last value seen (or error met) and why."""

    value: Any
    why: str


class TimedOut(MlpipeError):
    def __init__(self, message: str, last: Pending | None) -> None:
        super().__init__(message)
        self.last = last


def poll(
    attempt: Callable[[], T | Pending],
    *,
    timeout: float,
    clock: Clock,
    backoff: Backoff = Backoff(),
    attempts: int | None = None,
    progress: Callable[[Pending, float], None] | None = None,
) -> T:
    """Call `attempt` until it returns a value that is not `Pending`, sleeping between calls.

    Raises `TimedOut` (with the last `Pending`) once `timeout` seconds have passed on the
    clock, or after `attempts` calls when that is set."""
    started, interval, calls = clock.now(), backoff.first, 0
    while True:
        answer = attempt()
        calls += 1
        if not isinstance(answer, Pending):
            return answer
        elapsed = clock.now() - started
        if elapsed >= timeout or (attempts is not None and calls >= attempts):
            raise TimedOut(f"{answer.why} after {_duration(elapsed)}", answer)
        if progress is not None:
            progress(answer, elapsed)
        clock.sleep(min(interval, timeout - elapsed))
        interval = min(interval * 2, backoff.cap)


def wait_for(
    refresh: Callable[[], tuple[T, str]],
    *,
    pending: Collection[str],
    target: Collection[str],
    timeout: float,
    clock: Clock,
    what: str,
    backoff: Backoff = Backoff(),
    progress: Callable[[str, float], None] | None = None,
) -> T:
    """Refresh until the state (`refresh()[1]`) is in `target`; `pending` states wait.

    A state in neither is a failure, said with `what`; so is the timeout."""

    def attempt() -> T | Pending:
        value, state = refresh()
        if state in target:
            return value
        if state in pending:
            return Pending(value, f"{what} still {state}")
        raise MlpipeError(f"{what} is {state}, expected {' or '.join(sorted(target))}")

    def report(last: Pending, elapsed: float) -> None:
        if progress is not None:
            progress(last.why, elapsed)

    return poll(attempt, timeout=timeout, clock=clock, backoff=backoff, progress=report)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    return f"{seconds / 60:.0f} min"
