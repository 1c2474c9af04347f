"""Global options, and turning them into an AWS target (the embedded AWS included)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import boto3
import typer

from mlpipe.cli import validation
from mlpipe.cli.output import err
from mlpipe.core.clients import AwsTarget
from mlpipe.core.context import Progress
from mlpipe.core.errors import MlpipeError
from mlpipe.core.pipeline import Pipeline
from mlpipe.local import server
from mlpipe.spec import load_spec

DEFAULT_SPEC = Path("config/pipeline.yaml")


@dataclass
class Options:
    spec: Path = DEFAULT_SPEC
    profile: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    local: bool = False

    def target(self) -> AwsTarget:
        # Checked here, before the first AWS call, so that commands without one pay nothing.
        validation.check_global(self.endpoint_url, self.region, self.local, self.profile)
        endpoint = self.endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
        local = self.local or (endpoint is None and self.profile is None and _no_credentials())
        if local and endpoint is None:
            if not self.local:
                err("No AWS credentials found: using the embedded AWS (--local).")
            endpoint = embedded_aws(self.spec if self.spec.is_file() else None)
        return AwsTarget(self.profile, self.region, endpoint, local=local)

    def pipeline(self, progress: Progress | None = None) -> Pipeline:
        spec = load_spec(self.spec)  # a bad spec stops here, before any AWS call
        return Pipeline.connect(spec, self.target(), progress)


def _no_credentials() -> bool:
    return boto3.session.Session().get_credentials() is None


def embedded_aws(spec: Path | None = None) -> str:
    """The running embedded AWS's URL; starts one in the background if none is running."""
    info = server.detached_status()
    if info is None:
        try:
            info = server.start_detached(spec=spec)
        except server.LocalAwsError as exc:
            raise MlpipeError(str(exc)) from exc
        err(
            f"Started the embedded AWS at {info.endpoint_url} (pid {info.pid}); "
            "`mlpipe local down` stops it."
        )
    return info.endpoint_url


def options(ctx: typer.Context) -> Options:
    return ctx.ensure_object(Options)
