"""`mlpipe local up|down|status`: the embedded AWS (moto's server with mlpipe's extensions)."""

from __future__ import annotations

import typer

from mlpipe.cli.output import emit_json, err, out
from mlpipe.core.errors import MlpipeError
from mlpipe.local import server

app = typer.Typer(help="Run the embedded AWS on 127.0.0.1.", no_args_is_help=True)


@app.command()
def up(
    port: int = typer.Option(server.DEFAULT_PORT, help="Port to listen on (0: any free port)."),
    detach: bool = typer.Option(False, "--detach", "-d", help="Run in the background."),
    timeout: float = typer.Option(30.0, help="Seconds to wait for a detached server."),
) -> None:
    """Start the embedded AWS (foreground unless --detach)."""
    try:
        if detach:
            info = server.start_detached(server.DEFAULT_HOST, port, timeout)
            out.print(info.endpoint_url, markup=False)
            err(f"Embedded AWS running (pid {info.pid}); stop it with `mlpipe local down`.")
            return
        server.serve(
            server.DEFAULT_HOST,
            port,
            lambda aws: err(f"Embedded AWS at {aws.endpoint_url}; Ctrl-C stops it."),
        )
    except server.LocalAwsError as exc:
        raise MlpipeError(str(exc)) from exc


@app.command()
def down() -> None:
    """Stop the background embedded AWS."""
    if server.stop_detached():
        err("Embedded AWS stopped.")
    else:
        err("No embedded AWS was running.")


@app.command("status")
def local_status(
    json_output: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Say whether the background embedded AWS runs, and where."""
    info = server.detached_status()
    if json_output:
        emit_json(info.__dict__ if info else None)
    elif info:
        out.print(f"running at {info.endpoint_url} (pid {info.pid}, since {info.started_at})")
    else:
        out.print("not running")
    if info is None:
        raise typer.Exit(1)
