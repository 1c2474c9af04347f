"""`mlpipe status`: every resource, missing / in sync / drifted."""

from __future__ import annotations

import typer

from mlpipe.cli.options import options
from mlpipe.cli.output import emit_json, out


def status(
    ctx: typer.Context,
    json_output: bool = typer.Option(False, "--json", help="Print the status as JSON."),
) -> None:
    """Show whether each resource exists and matches the spec."""
    from mlpipe.cli.render import alarm_table, status_table

    pipeline = options(ctx).pipeline()
    rows, alarms = pipeline.status(), pipeline.alarms()
    if json_output:
        emit_json({"resources": rows, "alarms": alarms})
    else:
        out.print(status_table(rows))
        out.print(alarm_table(alarms))
