"""`mlpipe apply` and `mlpipe destroy`: show the plan, confirm, execute it, summarise."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

import typer

from mlpipe.cli.options import options
from mlpipe.cli.output import err, out, stderr
from mlpipe.core.errors import ExitStatus, UsageError

if TYPE_CHECKING:
    from mlpipe.core.executor import Outcome
    from mlpipe.core.plan import Plan, Step
    from mlpipe.pipeline import Pipeline

YES = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation.")
PARALLELISM = typer.Option(8, min=1, max=64, help="Resources worked on at once.")
FORCE_UNLOCK = typer.Option(
    False, "--force-unlock", help="Take the lock over from an operation known to be gone."
)


def _confirm(question: str, yes: bool) -> bool:
    if yes:
        return True
    if not sys.stdin.isatty():
        raise UsageError(f"{question} needs confirmation: pass --yes to run without a prompt")
    return typer.confirm(question, err=True)


def _run(pipeline: Pipeline, the_plan: Plan, yes: bool, verb: str, parallelism: int) -> None:
    from mlpipe.cli.render import plan_lines, progress_line, summary_table

    for line in plan_lines(the_plan):
        out.print(line)
    if not the_plan.changes:
        return
    if not _confirm(f"{verb} these changes?", yes):
        err("Nothing changed.")
        raise typer.Exit(ExitStatus.ERROR)

    def on_event(step: Step, outcome: Outcome | None) -> None:
        if step.action.value != "no-op":
            stderr.print(progress_line(step, outcome))

    started, calls_before = time.monotonic(), len(pipeline.aws.log.calls)
    writes_before = len(pipeline.aws.log.writes())
    report = pipeline.execute(the_plan, parallelism, on_event)
    calls = pipeline.aws.log.calls[calls_before:]
    writes = len(pipeline.aws.log.writes()) - writes_before
    stderr.print(summary_table(report, time.monotonic() - started, len(calls), writes))
    if not report.ok:
        raise typer.Exit(ExitStatus.ERROR)


def apply(
    ctx: typer.Context,
    yes: bool = YES,
    parallelism: int = PARALLELISM,
    force_unlock: bool = FORCE_UNLOCK,
) -> None:
    """Make AWS match the spec: create, update, replace what differs."""
    from mlpipe.ops.lock import locked_plan

    pipeline = options(ctx).pipeline(lambda key, msg: stderr.print(f"    {key}: {msg}"))
    make = lambda: pipeline.plan(parallelism)  # noqa: E731
    with locked_plan(pipeline.ctx, "apply", make, force_unlock=force_unlock) as the_plan:
        _run(pipeline, the_plan, yes, "Apply", parallelism)


def destroy(
    ctx: typer.Context,
    yes: bool = YES,
    force: bool = typer.Option(
        False,
        "--force",
        help="Also delete retained resources (the model bucket, a protected table, their key).",
    ),
    parallelism: int = PARALLELISM,
    force_unlock: bool = FORCE_UNLOCK,
) -> None:
    """Delete the pipeline's resources in reverse dependency order. Untagged ones are left."""
    from mlpipe.ops.lock import locked_plan

    pipeline = options(ctx).pipeline(lambda key, msg: stderr.print(f"    {key}: {msg}"))
    make = lambda: pipeline.destroy_plan(force, parallelism)  # noqa: E731
    with locked_plan(pipeline.ctx, "destroy", make, force_unlock=force_unlock) as the_plan:
        _run(pipeline, the_plan, yes, "Destroy", parallelism)
