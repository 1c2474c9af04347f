"""`mlpipe traffic|promote|rollback|history`: operations on the live endpoint."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import typer

from mlpipe.cli import validation
from mlpipe.cli.options import options
from mlpipe.cli.output import emit, err, out, stderr
from mlpipe.core.errors import UsageError

if TYPE_CHECKING:
    from mlpipe.ops.deployments import Runner, Transition

TIMEOUT = typer.Option(None, help="Seconds to wait for the endpoint (default: the spec's).")
FORCE_UNLOCK = typer.Option(False, "--force-unlock", help="Break a stale operation lock.")


def _runner(ctx: typer.Context, timeout: float | None, force_unlock: bool) -> Runner:
    from mlpipe.ops.deployments import Runner

    validation.positive_seconds(timeout, "--timeout")
    pipeline = options(ctx).pipeline(lambda key, msg: stderr.print(f"    {key}: {msg}"))
    return Runner(pipeline.ctx, timeout=timeout, force_unlock=force_unlock)


def _report(transition: Transition) -> None:
    for step in transition.steps:
        err(f"  • {step}")
    before = {v.name: f"{v.version} {v.weight}%" for v in transition.before.variants}
    after = {v.name: f"{v.version} {v.weight}%" for v in transition.after.variants}
    for name in after:
        out.print(f"{name}: {before.get(name, '-')} → {after[name]}", markup=False)
    if transition.active_before != transition.active_after:
        out.print(f"active: {transition.active_before} → {transition.active_after}", markup=False)
    err(f"{transition.kind} took {transition.seconds:.2f}s")


def _pairs(items: list[str]) -> dict[str, int]:
    from mlpipe.spec import VARIANT_NAME

    weights: dict[str, int] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--set {item!r}: expected VARIANT=WEIGHT")
        try:
            weights[name] = int(value)
        except ValueError as exc:
            raise UsageError(f"--set {item!r}: the weight must be an integer") from exc
        if not VARIANT_NAME.fullmatch(name):
            raise UsageError(f"--set {item!r}: {name!r} is not a variant name like ModelA")
    return weights


def _weight(option: str, value: int | None) -> int | None:
    if value is not None and not 0 <= value <= 100:
        raise UsageError(f"{option}: {value} is not a weight from 0 to 100 (percent)")
    return value


def traffic(
    ctx: typer.Context,
    a: int | None = typer.Option(None, "--a", help="Weight of the first variant (percent)."),
    b: int | None = typer.Option(None, "--b", help="Weight of the second variant (percent)."),
    set_: list[str] = typer.Option([], "--set", help="VARIANT=WEIGHT, for any variant."),
    timeout: float | None = TIMEOUT,
    force_unlock: bool = FORCE_UNLOCK,
) -> None:
    """Shift traffic between variants: integers 0-100 that add up to 100."""
    from mlpipe.ops import deployments

    requested = _pairs(set_)
    checks = {"--a": a, "--b": b, **{f"--set {k}": v for k, v in requested.items()}}
    for option, value in checks.items():
        _weight(option, value)
    runner = _runner(ctx, timeout, force_unlock)
    variants = [v.name for v in runner.current().variants]
    for index, weight in enumerate((a, b)):
        if weight is not None:
            if index >= len(variants):
                raise UsageError("the endpoint has only one variant: use --set")
            requested[variants[index]] = weight
    if not requested:
        raise UsageError("give weights with --a/--b or --set VARIANT=WEIGHT")
    _report(deployments.traffic(runner, requested))


def promote(
    ctx: typer.Context,
    version: str = typer.Argument(..., help="A registered version, e.g. v2.0.0."),
    canary: str | None = typer.Option(None, help="Progressive steps in percent, e.g. 10,50,100."),
    interval: str | None = typer.Option(None, help="Wait between canary steps, e.g. 5m."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the steps; change nothing."),
    timeout: float | None = TIMEOUT,
    force_unlock: bool = FORCE_UNLOCK,
    watch: bool = typer.Option(False, "--watch", help="Show the live view while it runs."),
) -> None:
    """Make a registered version active, deploying it to the challenger variant first."""
    from mlpipe.ops import deployments, registry

    registry.require_version(version)
    plan = deployments.parse_canary(canary, interval)
    from mlpipe.cli.watch import watching

    runner = _runner(ctx, timeout, force_unlock)
    with watching(runner.ctx) if watch and not dry_run else contextlib.nullcontext():
        outcome = deployments.promote(runner, version, plan, dry_run)
    if dry_run:
        for step in outcome.steps:
            out.print(f"• {step}", markup=False)
        err("Dry run: nothing changed.")
        return
    _report(outcome)


def rollback(
    ctx: typer.Context,
    to: str | None = typer.Option(None, "--to", help="Version (default: the previous active)."),
    timeout: float | None = TIMEOUT,
    force_unlock: bool = FORCE_UNLOCK,
) -> None:
    """Go back to the previous active version: a weight shift when it is still served."""
    from mlpipe.ops import deployments, registry

    if to is not None:
        registry.require_version(to)
    _report(deployments.rollback(_runner(ctx, timeout, force_unlock), to))


def history_command(
    ctx: typer.Context,
    json_output: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Registrations, promotions, traffic shifts and rollbacks, newest first."""
    from mlpipe.cli.render import history_table
    from mlpipe.ops import history

    emit(history.events(options(ctx).pipeline().ctx), json_output, history_table)
