"""`mlpipe plan`: what apply would change, read-only."""

from __future__ import annotations

import typer

from mlpipe.cli.options import options
from mlpipe.cli.output import emit_json, out

# The status of `plan --detailed-exitcode` with changes (as Terraform's: 0 none, 1 an error,
# 2 changes). Not an `ExitStatus`: invalid input exits 2 as well (`ExitStatus.USAGE`).
CHANGES_PRESENT = 2


def plan(
    ctx: typer.Context,
    detailed_exitcode: bool = typer.Option(
        False, "--detailed-exitcode", help="Exit 0 without changes, 2 with changes, 1 on error."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="List unchanged resources too."),
    parallelism: int = typer.Option(8, min=1, max=64, help="Concurrent reads."),
) -> None:
    """Show the changes apply would make, property by property."""
    from mlpipe.cli.render import plan_lines

    the_plan = options(ctx).pipeline().plan(parallelism)
    if json_output:
        emit_json(the_plan.as_json())
    else:
        for line in plan_lines(the_plan, verbose):
            out.print(line)
    if detailed_exitcode and the_plan.changes:
        raise typer.Exit(CHANGES_PRESENT)
