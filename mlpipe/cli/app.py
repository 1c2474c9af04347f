"""The `mlpipe` command: global options, the commands, and the one error-to-exit mapping."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, NoCredentialsError
from botocore.exceptions import ConnectionError as BotoConnectionError

from mlpipe import __version__
from mlpipe.cli import (
    apply,
    demo,
    local,
    logs,
    models,
    operations,
    plan,
    serving,
    status,
    validate,
    watch,
)
from mlpipe.cli.options import DEFAULT_SPEC, Options
from mlpipe.cli.output import err
from mlpipe.core.errors import (
    NO_CREDENTIALS,
    ExitStatus,
    MlpipeError,
    SpecError,
    describe_error,
)

app = typer.Typer(
    help="Provision and operate an AWS ML inference pipeline from one declarative spec.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        print(f"mlpipe {__version__}")
        raise typer.Exit()


@app.callback()
def global_options(
    ctx: typer.Context,
    spec: Path = typer.Option(DEFAULT_SPEC, "--spec", "-f", help="The pipeline spec file."),
    profile: str | None = typer.Option(None, help="AWS profile (else the default chain)."),
    region: str | None = typer.Option(None, help="AWS region (else the profile's)."),
    endpoint_url: str | None = typer.Option(
        None, help="Send every AWS call here (AWS_ENDPOINT_URL is honoured too)."
    ),
    local_aws: bool = typer.Option(
        False, "--local", help="Use the embedded AWS, starting it if needed."
    ),
    max_attempts: int | None = typer.Option(
        None,
        min=1,
        help="Attempts per AWS call for throttling and transient errors (default 10); also "
        "retries connection errors, which otherwise fail at once (for slow networks).",
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version."
    ),
) -> None:
    ctx.obj = Options(spec, profile, region, endpoint_url, local_aws, max_attempts)


app.command()(validate.validate)
app.command()(plan.plan)
app.command()(apply.apply)
app.command()(apply.destroy)
app.command()(status.status)
app.command()(demo.demo)
app.command()(operations.traffic)
app.command()(operations.promote)
app.command()(operations.rollback)
app.command("history")(operations.history_command)
app.command()(serving.predict)
app.command()(watch.watch)
app.command()(logs.logs)
app.add_typer(serving.stream_app, name="stream")
app.add_typer(models.app, name="models")
app.add_typer(local.app, name="local")


def _reason(exc: BotoConnectionError) -> str:
    """Why a connection failed, in the socket's words (refused, name not known, timeout)."""
    if isinstance(exc, ConnectTimeoutError):
        return "no answer to the connection (timed out)"
    cause = getattr(exc.kwargs.get("error"), "__cause__", None)
    if isinstance(cause, OSError) and cause.strerror:
        return str(cause.strerror)
    return "is the endpoint up?"


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and map every error to one exit status and one clear message."""
    try:
        app(args=argv, prog_name="mlpipe")
    except SystemExit as exc:  # typer's own exits: usage errors, --help, typer.Exit(code)
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except SpecError as exc:
        for line in exc.lines:
            err(line)
        return exc.exit_status
    except MlpipeError as exc:
        err(f"Error: {exc}")
        return exc.exit_status
    except NoCredentialsError:
        err(f"Error: {NO_CREDENTIALS}")
        return ExitStatus.ERROR
    except BotoConnectionError as exc:
        err(f"Error: cannot reach {exc.kwargs.get('endpoint_url')}: {_reason(exc)}")
        return ExitStatus.ERROR
    except (ClientError, BotoCoreError) as exc:
        err(f"AWS error: {describe_error(exc)}")
        return ExitStatus.ERROR
    except KeyboardInterrupt:
        err("Interrupted.")
        return 130
    except Exception as exc:  # the last resort: one line on the terminal, the trace in a file
        from mlpipe.cli.crash import write_trace

        detail = " ".join(str(exc).split())[:200]
        err(f"Error: unexpected {type(exc).__name__}: {detail} ({write_trace(exc)})")
        return ExitStatus.ERROR
    return ExitStatus.OK


def main() -> None:
    sys.exit(run())
