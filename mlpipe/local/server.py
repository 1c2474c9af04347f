"""The embedded AWS: moto's server on a local port, in this process or detached in the background.

``LocalAws`` runs moto's ``ThreadedMotoServer`` in this process with mlpipe's extensions
(:mod:`mlpipe.local.moto_ext`) and moto set up to run Batch and Lambda without Docker.
``start_detached`` runs the same in a background process (``python -m mlpipe.local.server``) and
keeps its pid, address and log under ``$MLPIPE_HOME/local`` (default ``~/.mlpipe/local``).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlpipe.local import DEFAULT_HOST, DEFAULT_PORT
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

PID_FILE = "server.pid"
INFO_FILE = "server.json"
LOG_FILE = "server.log"
NOTIFICATIONS_FILE = "notifications.jsonl"


class LocalAwsError(RuntimeError):
    """The local AWS could not be started, reached or stopped."""


class PortInUseError(LocalAwsError):
    def __init__(self, host: str, port: int):
        super().__init__(
            f"Port {port} on {host} is already in use; choose another port with --port "
            "(0 picks a free one)."
        )
        self.host = host
        self.port = port


class ServerAlreadyRunningError(LocalAwsError):
    def __init__(self, info: ServerInfo, pid_file: Path):
        super().__init__(
            f"A local AWS is already running at {info.endpoint_url} (pid {info.pid}, "
            f"recorded in {pid_file}); stop it first."
        )
        self.info = info


class ServerStartError(LocalAwsError):
    """The detached server did not come up."""


@dataclass(frozen=True)
class ServerInfo:
    pid: int
    host: str
    port: int
    endpoint_url: str
    started_at: str
    log_file: str
    # The runtimes (SageMaker runtime, deployed API) listen on the two ports after `port`.
    runtime_url: str | None = None
    api_url: str | None = None


def runtime_ports(host: str, port: int) -> tuple[int, int]:
    """The SageMaker runtime's and the API's ports: the two after a chosen port, free ones
    for any port (0)."""
    if port == 0:
        return _free_port(host), _free_port(host)
    return port + 1, port + 2


def state_dir() -> Path:
    """Where the detached server keeps its pid file, address and log."""
    home = os.environ.get("MLPIPE_HOME")
    base = Path(home).expanduser() if home else Path.home() / ".mlpipe"
    return base / "local"


def _url(host: str, port: int) -> str:
    return f"http://{host}:{port}"


# --- in-process server --------------------------------------------------------------------------
# moto is imported only where the server runs: finding, starting and stopping a detached one
# (what the CLI's --local does) does not load it.


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # werkzeug binds with SO_REUSEADDR too, so a port in TIME_WAIT counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUseError(host, port) from None
            raise LocalAwsError(f"Cannot listen on {host}:{port}: {exc.strerror}") from None


# The local AWS is on this machine: never send its calls through an HTTP proxy.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _request(url: str, body: dict[str, Any] | None = None, timeout: float = 5.0) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    request.add_header("Content-Type", "application/json")
    with _opener.open(request, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


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
        return _url(self.host, self.port)

    @property
    def running(self) -> bool:
        return self._server is not None

    def reset(self) -> None:
        """Empty every service. moto keeps its state per process, not per server: a process
        that ran other embedded AWSs (or moto mocks) before would otherwise see their state."""
        _request(f"{self.endpoint_url}/moto-api/reset", {})

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
            _check_port_free(self.host, self._requested_port)
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
            self._previous_config = _request(config_url)
            # Before anything is created: moto keeps Lambda's no-Docker resources apart.
            _request(config_url, MOTO_CONFIG)
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
                _request(f"{_url(self.host, self.port)}/moto-api/config", previous)
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
    from mlpipe.spec import Names, load_spec

    spec = load_spec(spec_path)
    client = Aws(AwsTarget(endpoint_url=aws.endpoint_url, local=True))
    names = Names(spec.pipeline, spec.environment, client.account, client.region)
    runtime_port, api_port = ports
    return LocalServices(client, names, spec.api.stage, aws.host, runtime_port, api_port).start()


# --- detached server ----------------------------------------------------------------------------


# Servers this process started: their exit is collected through Popen, leaving no zombie.
_children: dict[int, subprocess.Popen[bytes]] = {}


def _pid_running(pid: int) -> bool:
    child = _children.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del _children[pid]
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():  # guard against a recycled pid
        with contextlib.suppress(OSError):
            return b"mlpipe.local.server" in cmdline.read_bytes()
    return True


def _remove_state(directory: Path) -> None:
    for name in (PID_FILE, INFO_FILE):
        with contextlib.suppress(FileNotFoundError):
            (directory / name).unlink()


def _read_state(directory: Path) -> ServerInfo | None:
    try:
        pid = int((directory / PID_FILE).read_text().strip())
        data = json.loads((directory / INFO_FILE).read_text())
        return ServerInfo(
            pid=pid,
            host=str(data["host"]),
            port=int(data["port"]),
            endpoint_url=str(data["endpoint_url"]),
            started_at=str(data["started_at"]),
            log_file=str(data.get("log_file", directory / LOG_FILE)),
            runtime_url=data.get("runtime_url"),
            api_url=data.get("api_url"),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def detached_status() -> ServerInfo | None:
    """The detached server, or None if none is running (a stale pid file is removed)."""
    directory = state_dir()
    if not (directory / PID_FILE).exists():
        return None
    info = _read_state(directory)
    if info is None or not _pid_running(info.pid):
        _remove_state(directory)
        return None
    return info


def recent_notifications(count: int = 5) -> list[dict[str, Any]]:
    """The last alarm notifications the detached server published, oldest first."""
    try:
        lines = (state_dir() / NOTIFICATIONS_FILE).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    found = []
    for line in lines[-count:]:
        with contextlib.suppress(ValueError):
            found.append(json.loads(line))
    return found


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


def _answers(url: str) -> bool:
    try:
        _request(f"{url}/moto-api/config", timeout=1.0)
    except (OSError, ValueError):
        return False
    return True


def _listens(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1.0)
        return probe.connect_ex((host, port)) == 0


def _child_env() -> dict[str, str]:
    """Environment for the child, able to import mlpipe however this process found it."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    paths = [root, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


def _poll(interval: float, deadline: float) -> Iterator[None]:
    while True:
        yield
        if time.monotonic() >= deadline:
            return
        time.sleep(interval)


def start_detached(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    timeout: float = 30.0,
    spec: Path | None = None,
) -> ServerInfo:
    """Start the local AWS in a background process and wait until it answers; with a spec,
    the pipeline's runtimes too."""
    directory = state_dir()
    directory.mkdir(parents=True, exist_ok=True)
    running = detached_status()
    if running is not None:
        raise ServerAlreadyRunningError(running, directory / PID_FILE)
    extra = runtime_ports(host, port) if spec is not None else None
    port = port or _free_port(host)
    _check_port_free(host, port)

    log_path = directory / LOG_FILE
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlpipe.local.server",
                "--host",
                host,
                "--port",
                str(port),
                *(
                    ["--spec", str(spec), "--runtime-ports", f"{extra[0]},{extra[1]}"]
                    if spec is not None and extra is not None
                    else []
                ),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=_child_env(),
        )
    _children[process.pid] = process
    info = ServerInfo(
        pid=process.pid,
        host=host,
        port=port,
        endpoint_url=_url(host, port),
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        log_file=str(log_path),
        **_runtime_urls(host, extra),
    )
    (directory / PID_FILE).write_text(f"{process.pid}\n")
    (directory / INFO_FILE).write_text(json.dumps(asdict(info), indent=2) + "\n")

    for _ in _poll(0.05, time.monotonic() + timeout):
        if process.poll() is not None:
            problem = f"exited with code {process.returncode}"
            break
        if _answers(info.endpoint_url) and (extra is None or _listens(host, extra[1])):
            return info
    else:
        problem = f"did not answer within {timeout:g} s"
        _terminate(process.pid)
    _remove_state(directory)
    raise ServerStartError(
        f"The local AWS on {info.endpoint_url} {problem}. Log {log_path}:\n{_log_tail(log_path)}"
    )


def _runtime_urls(host: str, ports: tuple[int, int] | None) -> dict[str, str]:
    if ports is None:
        return {}
    return {"runtime_url": _url(host, ports[0]), "api_url": _url(host, ports[1])}


def _terminate(pid: int, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it is still running after ``grace`` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    for _ in _poll(0.05, time.monotonic() + grace):
        if not _pid_running(pid):
            return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    for _ in _poll(0.05, time.monotonic() + grace):
        if not _pid_running(pid):
            return


def stop_detached(grace: float = 10.0) -> bool:
    """Stop the detached server. False if none was running."""
    info = detached_status()
    if info is None:
        return False
    _terminate(info.pid, grace)
    _remove_state(state_dir())
    return True


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
