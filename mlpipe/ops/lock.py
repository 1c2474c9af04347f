"""The pipeline's lock, a lease in Parameter Store: one writer at a time.

`apply`, `destroy` and every model operation hold it while they read what they change and
write it. The lock is a series of parameters `<lock>/<generation>`; the highest generation is
the current lease. A lease is taken by creating the next generation with a conditional write
(PutParameter without Overwrite fails when the parameter exists), so of two callers only one
wins. The record names a token unique to the run: a write whose answer was lost, retried and
refused as a duplicate, is recognised as the caller's own. The holder renews the lease while it
works (a background thread); a lease not renewed for `models.lock_lease_seconds` has expired
and the next caller takes the next generation, again with a conditional write.
`--force-unlock` takes over a lease at once, for a holder known to be gone.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypedDict

from botocore.exceptions import ClientError

from mlpipe.context import PipelineContext
from mlpipe.core.diff import tags_to_list
from mlpipe.core.errors import MlpipeError, error_code
from mlpipe.core.find import find, forget
from mlpipe.core.plan import Plan

Now = Callable[[], datetime]
LOCK_KEY = "ssm:lock"


def _utcnow() -> datetime:
    return datetime.now(UTC)


class LockRecord(TypedDict, total=False):
    """A lease as its parameter holds it (JSON); one written by another version may lack keys."""

    token: str
    owner: str
    operation: str
    acquiredAt: str
    renewedAt: str
    expiresAt: str
    host: str
    pid: int


# What a parameter that is not a lease's JSON reads as.
UNKNOWN: LockRecord = {"owner": "unknown", "operation": "unknown"}


class LockHeld(MlpipeError):
    """Another operation holds the lock."""


class LockLost(MlpipeError):
    """The lease expired and another operation took the lock over."""


def _generations(ctx: PipelineContext) -> dict[int, str]:
    """generation → parameter name, of the lock's parameters that exist."""
    prefix = ctx.names.lock_param + "/"
    pages = (
        ctx.aws.client("ssm")
        .get_paginator("get_parameters_by_path")
        .paginate(Path=ctx.names.lock_param)
    )
    found = {}
    for page in pages:
        for param in page["Parameters"]:
            suffix = param["Name"].removeprefix(prefix)
            if suffix.isdigit():
                found[int(suffix)] = param["Name"]
    return found


def _read(ctx: PipelineContext, name: str) -> LockRecord | None:
    found = find(ctx.aws.client("ssm"), "get_parameter", Name=name)
    if found is None:
        return None
    try:
        record: LockRecord = json.loads(found["Parameter"]["Value"])
    except ValueError:
        return UNKNOWN
    return record if isinstance(record, dict) else UNKNOWN


def _expired(record: LockRecord, now: datetime) -> bool:
    try:
        return datetime.fromisoformat(str(record["expiresAt"])) <= now
    except (KeyError, ValueError):
        return True  # not a lease this version wrote: nothing renews it


def describe(record: LockRecord, now: datetime) -> str:
    """Who holds a lease, doing what, since when, until when."""
    text = f"{record.get('operation')} by {record.get('owner')}"
    host = record.get("host")
    if host:
        text += f" on {host} (pid {record.get('pid')})"
    if record.get("acquiredAt"):
        text += f" since {record['acquiredAt']}"
    try:
        left = (datetime.fromisoformat(str(record["expiresAt"])) - now).total_seconds()
        text += f", lease {'expires in' if left > 0 else 'expired'} {abs(left):.0f}s"
        text += "" if left > 0 else " ago"
    except (KeyError, ValueError):
        pass
    return text


@dataclass
class Lease:
    """A lease this run holds: renew it while working, release it when done."""

    ctx: PipelineContext
    name: str
    record: LockRecord
    seconds: int
    now: Now = _utcnow
    lost: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def token(self) -> str:
        return str(self.record["token"])

    def held(self) -> bool:
        """Whether the lease is still this run's: its generation is the newest and ours."""
        newest = max(_generations(self.ctx), default=None)
        current = _read(self.ctx, self.name)
        return (
            newest is not None
            and self.name.endswith(f"/{newest}")
            and current is not None
            and current.get("token") == self.token
        )

    def renew(self) -> None:
        """Push the expiry `seconds` ahead; note it if another run has taken the lock over."""
        with self._lock:
            if self.lost is not None:
                return
            if not self.held():
                self.lost = f"lease {self.name} was taken over by another operation"
                return
            now = self.now()
            self.record = {
                **self.record,
                "renewedAt": now.isoformat(),
                "expiresAt": (now + timedelta(seconds=self.seconds)).isoformat(),
            }
            self.ctx.aws.client("ssm").put_parameter(
                Name=self.name, Value=_json(self.record), Type="String", Overwrite=True
            )

    def check(self) -> None:
        """Raise if the lease was lost: what the run writes next would not be serialised."""
        if self.lost is not None:
            raise LockLost(f"{self.lost}: stopped before writing more")

    def release(self) -> None:
        with self._lock:
            current = _read(self.ctx, self.name)
            if self.lost is not None or current is None or current.get("token") != self.token:
                return
            _forget(self.ctx, self.name)  # gone already: a retried delete whose answer was lost


def _json(record: LockRecord) -> str:
    return json.dumps(record, sort_keys=True)


def acquire(
    ctx: PipelineContext, operation: str, *, force_unlock: bool = False, now: Now = _utcnow
) -> Lease:
    """Take the lock's next generation, or raise LockHeld naming who holds it."""
    ssm = ctx.aws.client("ssm")
    seconds = ctx.spec.models.lock_lease_seconds
    token = uuid.uuid4().hex
    for _ in range(3):
        generations = _generations(ctx)
        newest = max(generations, default=0)
        if newest:
            held = _read(ctx, generations[newest])
            if held is not None and not _expired(held, now()):
                if not force_unlock:
                    raise LockHeld(
                        f"another operation holds the lock {ctx.names.lock_param}: "
                        f"{describe(held, now())}; wait for it to finish (its lease lapses "
                        f"{seconds}s after its last renewal), or, if it is known to be gone, "
                        "rerun with --force-unlock"
                    )
                ctx.progress("lock", f"--force-unlock: taking over from {describe(held, now())}")
            elif held is not None:
                ctx.progress("lock", f"taking over an expired lease: {describe(held, now())}")
        at = now()
        record: LockRecord = {
            "token": token,
            "owner": ctx.aws.caller_arn,
            "operation": operation,
            "acquiredAt": at.isoformat(),
            "renewedAt": at.isoformat(),
            "expiresAt": (at + timedelta(seconds=seconds)).isoformat(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
        name = f"{ctx.names.lock_param}/{newest + 1}"
        try:
            ssm.put_parameter(
                Name=name,
                Value=_json(record),
                Type="String",
                Description=f"mlpipe lock of {ctx.names.pipeline_id}",
                Tags=tags_to_list(ctx.tags_for(LOCK_KEY)),
            )
        except ClientError as exc:
            if error_code(exc) != "ParameterAlreadyExists":
                raise
            winner = _read(ctx, name)
            if winner is None or winner.get("token") != token:
                force_unlock = False  # someone else won the race: theirs is a live lease
                continue
            # Our own write: its answer was lost and botocore's retry found it.
        for older in (g for g in generations if g <= newest):
            _forget(ctx, generations[older])
        return Lease(ctx, name, record, seconds, now)
    raise LockHeld(f"the lock {ctx.names.lock_param} is contended: try again")


def _forget(ctx: PipelineContext, name: str) -> None:
    forget(ctx.aws.client("ssm"), "delete_parameter", Name=name)


def holders(ctx: PipelineContext) -> list[LockRecord]:
    """The lock's current record, if any (`mlpipe watch` shows its operation in progress)."""
    generations = _generations(ctx)
    if not generations:
        return []
    record = _read(ctx, generations[max(generations)])
    return [record] if record else []


@contextmanager
def operation_lock(
    ctx: PipelineContext,
    operation: str,
    *,
    force_unlock: bool = False,
    now: Now = _utcnow,
    renew_every: float | None = None,
) -> Iterator[Lease]:
    """Hold the pipeline's lock for the block, renewing the lease in the background."""
    lease = acquire(ctx, operation, force_unlock=force_unlock, now=now)
    stop = threading.Event()
    interval = renew_every if renew_every is not None else lease.seconds / 3

    def renew() -> None:
        while not stop.wait(interval):
            try:
                lease.renew()
            except ClientError as exc:  # a failed renewal is tried again at the next tick
                ctx.progress("lock", f"renewing the lease failed: {exc}")

    renewer = threading.Thread(target=renew, name=f"mlpipe-lease-{operation}", daemon=True)
    renewer.start()
    try:
        yield lease
    finally:
        stop.set()
        renewer.join()
        lease.release()


@contextmanager
def locked_plan(
    ctx: PipelineContext,
    operation: str,
    make_plan: Callable[[], Plan],
    *,
    force_unlock: bool = False,
    now: Now = _utcnow,
) -> Iterator[Plan]:
    """The plan to execute. Nothing to change: the plan, without taking the lock (no write at
    all). Else the plan made again under the lock, which is held until the block ends, so that
    what is changed is read by the one writer."""
    plan = make_plan()
    if not plan.changes:
        yield plan
        return
    with operation_lock(ctx, operation, force_unlock=force_unlock, now=now):
        yield make_plan()
