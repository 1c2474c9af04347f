"""The lifecycle the local runtimes share: start, stop, and `with` around both."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self


class Service:
    """Something that runs in the background between `start()` and `stop()`."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class Periodic(Service):
    """Runs `run_once()` on a thread of its own every `interval` seconds between `start()` and
    `stop()` (also right away when `eager`); a failure is logged and the next round goes on,
    never stopping a runtime. Subclasses may finish up in `stopped()`."""

    thread_name = "mlpipe-periodic"
    failure = "a round failed"
    failure_level = logging.WARNING
    eager = False

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> object:
        raise NotImplementedError

    def stopped(self) -> None:
        """Called on `stop()`, after the thread has ended."""

    def start(self) -> Self:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        if self.eager:
            self._run_logged()
        while not self._stop.wait(self.interval):
            self._run_logged()

    def _run_logged(self) -> None:
        try:
            self.run_once()
        except Exception:
            logger = logging.getLogger(type(self).__module__)
            logger.log(self.failure_level, self.failure, exc_info=True)

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join()
        self.stopped()


class Flusher(Periodic):
    """Buffers work and sends it with the AWS client `client()` returns (called from the
    flushing thread) every `flush_interval` seconds, and once more on `stop()`; a failed send is
    logged and dropped. `wall` stamps what is buffered; `_lock` guards the buffer and
    `_flushing` one send at a time."""

    thread_name = "mlpipe-flush"
    failure = "could not send"

    def __init__(
        self,
        client: Callable[[], Any],
        *,
        flush_interval: float = 1.0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(flush_interval)
        self.client = client
        self.wall = wall
        self._pending: list[Any] = []
        self._lock = threading.Lock()
        self._flushing = threading.Lock()

    def flush(self) -> int:
        raise NotImplementedError

    def run_once(self) -> int:
        return self.flush()

    def stopped(self) -> None:
        self._run_logged()


class _HttpServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up is not an error worth a traceback on stderr."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class BackgroundHttpServer(Service):
    """Serves `handler_class()` on (host, port) in a thread; port 0 takes a free port.

    Subclasses give the handler class (which reaches its owner as `self.server.owner`) and
    may clean up in `stopped()`.
    """

    thread_name = "mlpipe-http"

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self._requested_port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def stopped(self) -> None:
        """Called after the server has stopped."""

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> Self:
        if self._server is not None:
            return self
        server = _HttpServer((self.host, self._requested_port), self.handler_class())
        server.daemon_threads = True
        server.owner = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"{self.thread_name}-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.stopped()
