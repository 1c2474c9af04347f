"""An operation lock in Parameter Store, so two operators cannot change the endpoint at once.

Taking the lock is a conditional write (PutParameter without Overwrite fails when the parameter
exists). A lock older than the spec's `models.lock_timeout_seconds` may be broken with
`--force-unlock`.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from mlpipe.core.context import Context
from mlpipe.core.diff import tags_to_list
from mlpipe.core.errors import MlpipeError, error_code, is_not_found

Now = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class LockHeld(MlpipeError):
    """Another operation holds the lock."""


def _held(ctx: Context) -> dict[str, Any] | None:
    try:
        value = ctx.aws.client("ssm").get_parameter(Name=ctx.names.lock_param)["Parameter"]
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise
    try:
        return dict(json.loads(value["Value"]))
    except ValueError:
        return {"owner": "unknown", "operation": "unknown", "acquiredAt": None}


@contextmanager
def operation_lock(
    ctx: Context, operation: str, *, force_unlock: bool = False, now: Now = _utcnow
) -> Iterator[dict[str, Any]]:
    """Hold the pipeline's operation lock for the duration of the block."""
    ssm, name = ctx.aws.client("ssm"), ctx.names.lock_param
    record = {
        "owner": ctx.aws.caller_arn,
        "operation": operation,
        "acquiredAt": now().isoformat(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }
    for attempt in range(2):
        try:
            ssm.put_parameter(
                Name=name,
                Value=json.dumps(record, sort_keys=True),
                Type="String",
                Description="mlpipe operation lock",
                Tags=tags_to_list(ctx.tags_for("ssm:lock")),
            )
            break
        except ClientError as exc:
            if error_code(exc) != "ParameterAlreadyExists":
                raise
            held = _held(ctx) or {}
            age = _age(held, now)
            timeout = ctx.spec.models.lock_timeout_seconds
            if force_unlock and attempt == 0 and (age is None or age > timeout):
                ssm.delete_parameter(Name=name)
                continue
            since = f" since {held.get('acquiredAt')} ({age:.0f}s ago)" if age is not None else ""
            hint = (
                "it is younger than the lock timeout, so it cannot be broken yet"
                if force_unlock
                else f"wait for it to finish, or, if it is older than {timeout}s and its "
                "operator is gone, rerun with --force-unlock"
            )
            raise LockHeld(
                f"another operation holds the lock {name}: {held.get('operation')} by "
                f"{held.get('owner')}{since}; {hint}"
            ) from exc
    try:
        yield record
    finally:
        current = _held(ctx)
        if current is not None and current.get("acquiredAt") == record["acquiredAt"]:
            ssm.delete_parameter(Name=name)


def _age(held: dict[str, Any], now: Now) -> float | None:
    try:
        acquired = datetime.fromisoformat(str(held["acquiredAt"]))
    except (KeyError, TypeError, ValueError):
        return None
    return (now() - acquired).total_seconds()
