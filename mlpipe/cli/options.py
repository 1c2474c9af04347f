"""Global options, and turning them into an AWS target (the embedded AWS included).

Commands import what they use when they run: this module, like every command module, imports
nothing heavy at import time, so `mlpipe --help` and `mlpipe validate` pay for neither boto3
nor the embedded AWS (moto).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import typer

from mlpipe.cli import validation

if TYPE_CHECKING:
    from mlpipe.core.clients import AwsTarget
    from mlpipe.core.context import Progress
    from mlpipe.pipeline import Pipeline

DEFAULT_SPEC = Path("config/pipeline.yaml")
LOCAL_EXTRA = "pip install 'mlpipe[local]'"
LOCAL_MODULES = ("moto", "flask")  # what the `local` extra installs: moto[server]


@dataclass
class Options:
    spec: Path = DEFAULT_SPEC
    profile: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    local: bool = False
    max_attempts: int | None = None

    def target(self) -> AwsTarget:
        from mlpipe.core.clients import AwsTarget

        # Checked here, before the first AWS call, so that commands without one pay nothing.
        validation.check_global(self.endpoint_url, self.region, self.local, self.profile)
        endpoint = self.endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
        if self.local and endpoint is None:
            endpoint = embedded_aws(self.spec if self.spec.is_file() else None)
        return AwsTarget(
            self.profile, self.region, endpoint, local=self.local, max_attempts=self.max_attempts
        )

    def pipeline(self, progress: Progress | None = None) -> Pipeline:
        from mlpipe.pipeline import Pipeline
        from mlpipe.spec import load_spec

        spec = load_spec(self.spec)  # a bad spec stops here, before any AWS call
        return Pipeline.connect(spec, self.target(), progress)


def local_server() -> ModuleType:
    """`mlpipe.local.server`, or an error naming the install command when the embedded AWS
    (the `local` extra: moto's server) is not installed. Loads no moto itself."""
    from mlpipe.core.errors import MlpipeError

    missing = [name for name in LOCAL_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise MlpipeError(
            f"the embedded AWS is not installed ({', '.join(missing)} missing): {LOCAL_EXTRA}"
        )
    from mlpipe.local import server

    return server


def embedded_aws(spec: Path | None = None) -> str:
    """The running embedded AWS's URL; starts one in the background if none is running."""
    from mlpipe.cli.output import err
    from mlpipe.core.errors import MlpipeError

    server = local_server()
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
