"""`mlpipe logs COMPONENT`: a component's CloudWatch logs, and --follow for new ones."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import typer

from mlpipe.cli.options import options
from mlpipe.cli.output import out


def logs(
    ctx: typer.Context,
    component: str = typer.Argument(
        ..., help="preprocess, stream, batch, workflow (the state machine) or endpoint."
    ),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new events."),
    since: str = typer.Option("10m", help="How far back to start, e.g. 30s, 10m or 2h."),
    filter_pattern: str | None = typer.Option(
        None, "--filter", help="A CloudWatch Logs filter pattern, e.g. ERROR or '\"Task timed\"'."
    ),
    poll: float = typer.Option(2.0, min=0.2, help="With --follow: seconds between reads."),
) -> None:
    """Print a component's log events from its CloudWatch log group (FilterLogEvents)."""
    from mlpipe.ops.deployments import parse_duration
    from mlpipe.ops.logs import check_component, log_group, tail

    check_component(component)  # bad input stops here, before any AWS call
    start_ms = int((time.time() - parse_duration(since)) * 1000)
    pipeline = options(ctx).pipeline()
    group = log_group(pipeline.ctx, component)
    events = tail(pipeline.ctx, group, start_ms, pattern=filter_pattern, follow=follow, poll=poll)
    try:
        for event in events:
            stamp = datetime.fromtimestamp(event["timestamp"] / 1000, UTC)
            when = f"{stamp:%Y-%m-%d %H:%M:%S.%f}"[:-3]
            message = str(event.get("message", "")).rstrip("\n")
            out.print(f"{when} {event.get('logStreamName', '')} {message}", markup=False)
    except KeyboardInterrupt:
        return
