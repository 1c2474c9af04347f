"""`mlpipe watch`'s snapshot: what it reads of the live pipeline."""

from __future__ import annotations

from mlpipe.core.context import Context
from mlpipe.ops.lock import operation_lock
from mlpipe.ops.watch import snapshot


def test_the_snapshot_shows_the_operation_holding_the_lock(ctx: Context) -> None:
    assert snapshot(ctx)["deployment"]["lock"] is None
    with operation_lock(ctx, "promote"):
        held = snapshot(ctx)["deployment"]["lock"]
    assert held is not None and held["operation"] == "promote"
    assert snapshot(ctx)["deployment"]["lock"] is None
