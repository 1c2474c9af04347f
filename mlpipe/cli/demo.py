"""`mlpipe demo`: the whole pipeline, working, on the embedded AWS."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer

from mlpipe.cli.options import local_server, options
from mlpipe.cli.output import err, out, stderr

if TYPE_CHECKING:
    from mlpipe.local.services import LocalServices
    from mlpipe.pipeline import Pipeline


class RichReporter:
    def __init__(self) -> None:
        self.started = time.monotonic()

    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        began = time.monotonic()
        with stderr.status(f"{title} …"):
            yield
        stderr.print(f"[green]✓[/] {title} [dim]({time.monotonic() - began:.1f}s)[/]")

    def note(self, key: str, message: str) -> None:
        stderr.print(f"    [dim]{key} {message}[/]")


def _keep(pipeline: Pipeline, services: LocalServices) -> None:
    err(f"Embedded AWS at {pipeline.aws.endpoint_url}")
    err(f"API at {services.api_url}/predict; SageMaker runtime at {services.runtime.endpoint_url}")
    err("Kept running for exploration: Ctrl-C to destroy and stop.")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        err("Stopping.")


def demo(
    ctx: typer.Context,
    requests: int = typer.Option(300, min=10, help="Predictions sent through the API."),
    records: int = typer.Option(200, min=1, help="Records streamed through Kinesis."),
    keep: bool = typer.Option(False, "--keep", help="Leave it all running until Ctrl-C."),
) -> None:
    """Provision the pipeline on the embedded AWS and watch it work, end to end."""
    local_server()  # the embedded AWS is installed, or one line says how
    from rich.table import Table

    from mlpipe.demo import Demo, DemoSettings
    from mlpipe.spec import load_spec

    spec = load_spec(options(ctx).spec)
    reporter = RichReporter()
    settings = DemoSettings(requests=requests, stream_records=records)
    result = Demo(spec, settings, reporter).run(_keep if keep else None)
    table = Table(title=f"mlpipe demo ({time.monotonic() - reporter.started:.1f}s)")
    table.add_column("step")
    table.add_column("result")
    for what, value in result.rows:
        table.add_row(what, value)
    out.print(table)
