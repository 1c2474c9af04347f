"""What the embedded AWS's server and its callers share: where a detached server keeps its
state, what it records, its errors, and the JSON requests made to it."""

from __future__ import annotations

import errno
import json
import os
import socket
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "LocalAwsError",
    "PortInUseError",
    "ServerAlreadyRunningError",
    "ServerInfo",
    "ServerStartError",
    "runtime_ports",
    "state_dir",
]

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
        return free_port(host), free_port(host)
    return port + 1, port + 2


def state_dir() -> Path:
    """Where the detached server keeps its pid file, address and log."""
    home = os.environ.get("MLPIPE_HOME")
    base = Path(home).expanduser() if home else Path.home() / ".mlpipe"
    return base / "local"


def url(host: str, port: int) -> str:
    return f"http://{host}:{port}"


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


# The local AWS is on this machine: never send its calls through an HTTP proxy.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def request(url: str, body: dict[str, Any] | None = None, timeout: float = 5.0) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    call = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    call.add_header("Content-Type", "application/json")
    with _opener.open(call, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


def check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # werkzeug binds with SO_REUSEADDR too, so a port in TIME_WAIT counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUseError(host, port) from None
            raise LocalAwsError(f"Cannot listen on {host}:{port}: {exc.strerror}") from None
