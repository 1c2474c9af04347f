"""The embedded AWS detached in a background process (``python -m mlpipe.local.server``), its
pid, address and log kept under ``$MLPIPE_HOME/local`` (default ``~/.mlpipe/local``)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlpipe.local import DEFAULT_HOST, DEFAULT_PORT
from mlpipe.local.server_state import (
    INFO_FILE,
    LOG_FILE,
    NOTIFICATIONS_FILE,
    PID_FILE,
    ServerAlreadyRunningError,
    ServerInfo,
    ServerStartError,
    check_port_free,
    free_port,
    request,
    runtime_ports,
    state_dir,
    url,
)

__all__ = ["detached_status", "recent_notifications", "start_detached", "stop_detached"]


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


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


def _answers(url: str) -> bool:
    try:
        request(f"{url}/moto-api/config", timeout=1.0)
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
    port = port or free_port(host)
    check_port_free(host, port)

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
        endpoint_url=url(host, port),
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
    return {"runtime_url": url(host, ports[0]), "api_url": url(host, ports[1])}


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
