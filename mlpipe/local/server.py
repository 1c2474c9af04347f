"""The embedded AWS: moto's server on a local port, in this process or detached in the background.

``LocalAws`` runs moto's ``ThreadedMotoServer`` in this process with mlpipe's extensions
(:mod:`mlpipe.local.moto_ext`) and moto set up to run Batch and Lambda without Docker.
``start_detached`` (:mod:`mlpipe.local.detached`) runs the same in a background process
(``python -m mlpipe.local.server``) and
keeps its pid, address and log under ``$MLPIPE_HOME/local`` (default ``~/.mlpipe/local``).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlpipe.local import DEFAULT_HOST, DEFAULT_PORT
from mlpipe.local.detached import (
    detached_status,
    recent_notifications,
    start_detached,
    stop_detached,
)
from mlpipe.local.server_state import (
    NOTIFICATIONS_FILE,
    LocalAwsError,
    PortInUseError,
    ServerAlreadyRunningError,
    ServerInfo,
    ServerStartError,
    check_port_free,
    request,
    state_dir,
    url,
)
from mlpipe.local.service import Service

if TYPE_CHECKING:
    from mlpipe.local.moto_server import MotoServer
    from mlpipe.local.services import LocalServices

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "LocalAws",
    "LocalAwsError",
    "PortInUseError",
    "ServerAlreadyRunningError",
    "ServerInfo",
    "ServerStartError",
    "detached_status",
    "recent_notifications",
    "serve",
    "start_detached",
    "state_dir",
    "stop_detached",
]


# Keys of moto's /moto-api/config that moto 5.2 reads: batch, lambda, stepfunctions.
MOTO_CONFIG: dict[str, Any] = {"batch": {"use_docker": False}, "lambda": {"use_docker": False}}

# How often the embedded AWS evaluates its CloudWatch alarms, in seconds.
ALARM_INTERVAL = 1.0


# --- in-process server --------------------------------------------------------------------------
# moto is imported only where the server runs: finding, starting and stopping a detached one
# (what the CLI's --local does) does not load it.


class LocalAws(Service):
    """moto's server in this process, with mlpipe's extensions. Port 0 picks a free port."""

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        log_requests: bool = False,
        alarm_interval: float = ALARM_INTERVAL,
    ):
        self.host = host
        self._requested_port = port
        self._log_requests = log_requests
        from mlpipe.local.alarms import AlarmEvaluator

        self.alarms = AlarmEvaluator(alarm_interval)
        self._server: MotoServer | None = None
        self._port: int | None = None
        self._previous_config: dict[str, Any] | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise LocalAwsError("The local AWS is not running.")
        return self._port

    @property
    def endpoint_url(self) -> str:
        return url(self.host, self.port)

    @property
    def running(self) -> bool:
        return self._server is not None

    def reset(self) -> None:
        """Empty every service. moto keeps its state per process, not per server: a process
        that ran other embedded AWSs (or moto mocks) before would otherwise see their state."""
        request(f"{self.endpoint_url}/moto-api/reset", {})

    def start(self) -> LocalAws:
        if self._server is not None:
            return self
        from mlpipe.local.moto_ext import install_extensions
        from mlpipe.local.moto_server import MotoServer

        # moto loads ~1,300 public AMIs into each EC2 backend (about a second); mlpipe runs no
        # instance. Read when a backend is made, so it holds for this process's moto.
        os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
        install_extensions()
        if self._requested_port:
            check_port_free(self.host, self._requested_port)
        server = MotoServer(self.host, self._requested_port, self._log_requests)
        server.start()
        if server.startup_error is not None:
            error = server.startup_error
            if isinstance(error, SystemExit) or getattr(error, "errno", None) == errno.EADDRINUSE:
                raise PortInUseError(self.host, self._requested_port)
            raise LocalAwsError(f"Cannot start the local AWS: {error}") from error
        self._server = server
        self._port = server.get_host_and_port()[1]
        self.alarms.start()
        config_url = f"{self.endpoint_url}/moto-api/config"
        try:
            # moto's settings are process-wide: keep them to give them back on stop().
            self._previous_config = request(config_url)
            # Before anything is created: moto keeps Lambda's no-Docker resources apart.
            request(config_url, MOTO_CONFIG)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self.alarms.stop()
        previous, self._previous_config = self._previous_config, None
        if previous:
            with contextlib.suppress(OSError, ValueError):
                request(f"{url(self.host, self.port)}/moto-api/config", previous)
        server.stop()
        self._port = None


def serve(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    on_ready: Callable[[LocalAws, LocalServices | None], None] | None = None,
    *,
    log_requests: bool = False,
    spec: Path | None = None,
    ports: tuple[int, int] | None = None,
) -> None:
    """Run the local AWS in the foreground until SIGINT or SIGTERM. Call from the main thread.

    With a spec, the pipeline's runtimes run too (SageMaker runtime, API, stream poller), on
    the ports after ``port``. ``on_ready`` is called once it answers (e.g. to show its
    address); nothing is printed here.
    """
    stop = threading.Event()

    def request_stop(signum: int, frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with LocalAws(host, port, log_requests=log_requests) as aws:
            services = None
            if spec is not None:
                chosen = ports or ((port + 1, port + 2) if port else (0, 0))
                services = _services(aws, spec, chosen)
            try:
                if on_ready is not None:
                    on_ready(aws, services)
                stop.wait()
            finally:
                if services is not None:
                    services.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _services(aws: LocalAws, spec_path: Path, ports: tuple[int, int]) -> LocalServices:
    from mlpipe.core.clients import Aws, AwsTarget
    from mlpipe.local.services import LocalServices
    from mlpipe.naming import Names
    from mlpipe.spec import load_spec

    spec = load_spec(spec_path)
    client = Aws(AwsTarget(endpoint_url=aws.endpoint_url, local=True))
    names = Names(spec.pipeline, spec.environment, client.account, client.region)
    runtime_port, api_port = ports
    return LocalServices(client, names, spec.api.stage, aws.host, runtime_port, api_port).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlpipe.local.server", description="Run mlpipe's local AWS (moto)."
    )
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--spec", type=Path, default=None)
    parser.add_argument("--runtime-ports", default=None, help="SageMaker runtime,API ports")
    args = parser.parse_args(argv)
    from mlpipe.local import alarm_history

    # Alarm notifications go to the log (stderr) and to a file `mlpipe local status` reads.
    alarm_history.NOTIFICATIONS_FILE = state_dir() / NOTIFICATIONS_FILE
    alarm_history.NOTIFICATIONS_FILE.unlink(missing_ok=True)  # a new embedded AWS starts empty
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    alarm_history.log.addHandler(handler)
    alarm_history.log.setLevel(logging.INFO)
    ports = None
    if args.runtime_ports:
        runtime, api = (int(p) for p in args.runtime_ports.split(","))
        ports = (runtime, api)

    def announce(aws: LocalAws, services: LocalServices | None) -> None:
        print(f"mlpipe local AWS listening on {aws.endpoint_url}", file=sys.stderr, flush=True)
        if services is not None:
            print(f"API on {services.api_url}", file=sys.stderr, flush=True)

    try:
        serve(
            args.host,
            args.port,
            on_ready=announce,
            log_requests=True,
            spec=args.spec,
            ports=ports,
        )
    except LocalAwsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
