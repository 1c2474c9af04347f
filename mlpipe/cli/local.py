"""`mlpipe local up|down|status`: the embedded AWS (moto's server with mlpipe's extensions)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from mlpipe.cli import validation
from mlpipe.cli.options import local_server, options
from mlpipe.cli.output import emit_json, err, out
from mlpipe.core.errors import MlpipeError
from mlpipe.local import DEFAULT_HOST, DEFAULT_PORT

if TYPE_CHECKING:
    from mlpipe.local.server import LocalAws
    from mlpipe.local.services import LocalServices

app = typer.Typer(help="Run the embedded AWS on 127.0.0.1.", no_args_is_help=True)


def _spec(ctx: typer.Context) -> Path | None:
    """The spec, when there is one: its pipeline's runtimes run beside the embedded AWS."""
    path = options(ctx).spec
    return path if path.is_file() else None


@app.command()
def up(
    ctx: typer.Context,
    port: int = typer.Option(
        DEFAULT_PORT,
        min=0,
        max=65533,
        help="Port of the embedded AWS (0: any free one); the SageMaker runtime and the API "
        "take the next two (free ones with 0).",
    ),
    detach: bool = typer.Option(False, "--detach", "-d", help="Run in the background."),
    timeout: float = typer.Option(30.0, help="Seconds to wait for a detached server."),
) -> None:
    """Start the embedded AWS (foreground unless --detach)."""
    validation.positive_seconds(timeout, "--timeout")
    server = local_server()
    try:
        if detach:
            info = server.start_detached(DEFAULT_HOST, port, timeout, _spec(ctx))
            out.print(info.endpoint_url, markup=False)
            err(f"Embedded AWS running (pid {info.pid}); stop it with `mlpipe local down`.")
            if info.api_url:
                err(f"The pipeline's API answers on {info.api_url} once applied.")
            return

        def ready(aws: LocalAws, services: LocalServices | None) -> None:
            err(f"Embedded AWS at {aws.endpoint_url}; Ctrl-C stops it.")
            if services is not None:
                err(f"The pipeline's API answers on {services.api_url} once applied.")

        server.serve(DEFAULT_HOST, port, ready, spec=_spec(ctx))
    except server.LocalAwsError as exc:
        raise MlpipeError(str(exc)) from exc


@app.command()
def down() -> None:
    """Stop the background embedded AWS."""
    if local_server().stop_detached():
        err("Embedded AWS stopped.")
    else:
        err("No embedded AWS was running.")


@app.command("status")
def local_status(
    json_output: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Say whether the background embedded AWS runs, and where."""
    server = local_server()
    info = server.detached_status()
    notifications = server.recent_notifications()
    if json_output:
        emit_json(info.__dict__ if info else None)
    elif info:
        out.print(f"running at {info.endpoint_url} (pid {info.pid}, since {info.started_at})")
    else:
        out.print("not running")
    if notifications and not json_output:
        out.print("Latest alarm notifications (SNS):")
        for note in notifications:
            reason = note["message"].get("NewStateReason", "")
            out.print(f"  {note['time']} {note['subject']}: {reason}", markup=False)
    if info is None:
        raise typer.Exit(1)
