"""`mlpipe watch`: a live view of the endpoint's variants, the alarms and the deployment."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import typer

from mlpipe.cli.options import options
from mlpipe.cli.output import emit_json, out, stderr

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from mlpipe.core.context import Context

STATE_COLOURS = {"OK": "green", "ALARM": "bold red", "INSUFFICIENT_DATA": "yellow"}
WIDE = 110  # columns from which the trends are shown


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _since(stamp: str | None) -> str:
    return stamp[11:19] if stamp else ""


def render(view: dict[str, Any], prefix: str = "", wide: bool = True) -> RenderableType:
    """A snapshot as a terminal view: header, variants, deployment, alarms; ``wide`` adds
    trend sparklines of invocations and p99 latency."""
    from rich import box
    from rich.console import Group
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    from mlpipe.ops.watch import sparkline

    endpoint, deployment = view["endpoint"], view["deployment"]
    header = Text.from_markup(
        f"[bold]{escape(endpoint['name'])}[/] {escape(endpoint['status'])} · active "
        f"[bold]{escape(str(view['active_version']))}[/] · last {view['window_seconds'] // 60}m "
        f"in {view['period_seconds']}s periods · {view['time'][11:19]} UTC"
    )
    variants = Table(title="Variants", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    columns = ["variant", "version", "weight", "share", "calls", "p50 ms", "p99 ms", "4xx/5xx"]
    columns += ["inst"] + (["calls trend", "p99 trend"] if wide else [])
    for column in columns:
        justify = "left" if column[0] == "v" or "trend" in column else "right"
        variants.add_column(column, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for v in view["variants"]:
        share = "-" if v["share_percent"] is None else f"{v['share_percent']:.1f}%"
        weight = f"{v['live_weight_percent']:g}%"
        if v["weight"] is not None and v["weight"] != v["live_weight_percent"]:
            weight += f"→{v['weight']}%"
        errors = f"{v['errors_4xx']}/{v['errors_5xx']}"
        row = [
            escape(v["name"]),
            escape(str(v["version"] or "-")),
            weight,
            share,
            f"{v['invocations']:,}",
            _number(v["p50_ms"]),
            _number(v["p99_ms"]),
            f"[red]{errors}[/]" if v["errors_5xx"] else errors,
            str(v["instances"] if v["instances"] is not None else "-"),
        ]
        if wide:
            row += [sparkline(v["invocations_series"]), sparkline(v["p99_ms_series"])]
        variants.add_row(*row)
    operation = deployment.get("operation") or {}
    lines = [
        f"champion [bold]{escape(str(deployment['champion']))}[/], challenger "
        f"{escape(str(deployment['challenger']))}"
    ]
    if operation:
        lines.append(
            f"last operation: {escape(str(operation.get('kind')))}: "
            f"{escape(str(operation.get('summary')))} ({_since(operation.get('at'))})"
        )
    lock = deployment.get("lock")
    if lock:
        lines.append(f"[bold yellow]in progress:[/] {escape(str(lock.get('operation')))}")
    alarms = Table(title="Alarms", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    alarms.add_column("alarm", no_wrap=True)
    alarms.add_column("state", no_wrap=True, min_width=17)
    alarms.add_column("since", no_wrap=True, min_width=8)
    alarms.add_column("reason", overflow="ellipsis", no_wrap=True, max_width=70)
    for alarm in view["alarms"]:
        state = alarm["state"]
        alarms.add_row(
            escape(alarm["name"].removeprefix(prefix)),
            f"[{STATE_COLOURS.get(state, 'dim')}]{state}[/]",
            _since(alarm["updated"]),
            escape(alarm["reason"] or ""),
        )
    deployment_text = Text.from_markup("Deployment: " + "\n  ".join(lines))
    return Group(header, variants, deployment_text, alarms)


def live(
    ctx: Context,
    take: Callable[[], dict[str, Any]],
    interval: float,
    until: threading.Event | None = None,
    console: Console = out,
) -> None:
    """Refresh the view every ``interval`` seconds until Ctrl-C, or until ``until`` is set.
    What else is printed on ``console`` meanwhile goes above the view."""
    from rich.live import Live

    stop = until or threading.Event()
    prefix = f"{ctx.names.pipeline_id}-"
    wide = console.width >= WIDE
    with Live(render(take(), prefix, wide), console=console, auto_refresh=False) as view:
        try:
            while not stop.wait(interval):
                view.update(render(take(), prefix, console.width >= WIDE), refresh=True)
        except KeyboardInterrupt:
            return


@contextmanager
def watching(ctx: Context, interval: float = 1.0) -> Iterator[None]:
    """The live view, refreshed in the background for the duration of the block, on stderr
    where the operation's progress goes (printed above it)."""
    from mlpipe.ops.watch import snapshot

    done = threading.Event()
    viewer = threading.Thread(
        target=live,
        args=(ctx, lambda: snapshot(ctx), interval, done, stderr),
        name="mlpipe-watch",
        daemon=True,
    )
    viewer.start()
    try:
        yield
    finally:
        done.set()
        viewer.join()


def watch(
    ctx: typer.Context,
    once: bool = typer.Option(False, "--once", help="Print one snapshot and exit."),
    json_output: bool = typer.Option(False, "--json", help="With --once: print it as JSON."),
    interval: float = typer.Option(2.0, min=0.2, help="Seconds between refreshes."),
    window: str = typer.Option("5m", help="How far back the figures look, e.g. 5m or 1h."),
    period: int = typer.Option(60, min=1, help="Seconds per point of the trends."),
) -> None:
    """Watch the endpoint live: per variant its version, weight, share of invocations,
    p50/p99 latency, 4xx/5xx and instances; the alarms; the deployment in progress."""
    from mlpipe.core.errors import UsageError
    from mlpipe.ops.deployments import parse_duration
    from mlpipe.ops.watch import snapshot

    if json_output and not once:
        raise UsageError("--json prints one snapshot: use it with --once")
    seconds = int(parse_duration(window))
    # CloudWatch's periods: 1, 5, 10, 30 (high resolution) or a multiple of 60 seconds.
    if period not in (1, 5, 10, 30) and period % 60:
        raise UsageError(f"--period {period}: use 1, 5, 10, 30 or a multiple of 60 seconds")
    if seconds < 60 or seconds % 60 or seconds % period:
        raise UsageError(
            f"--window {window}: a whole number of minutes, and of --period ({period}s)"
        )
    pipeline_ctx = options(ctx).pipeline().ctx

    def take() -> dict[str, Any]:
        return snapshot(pipeline_ctx, window=seconds, period=period)

    if once:
        view = take()
        if json_output:
            emit_json(view)
        else:
            out.print(render(view, f"{pipeline_ctx.names.pipeline_id}-", out.width >= WIDE))
        return
    live(pipeline_ctx, take, interval)
