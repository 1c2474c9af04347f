"""moto's threaded server, quiet or logging plain text, reporting a failed bind."""

from __future__ import annotations

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.server import ThreadedMotoServer
from werkzeug.serving import make_server

from mlpipe.local import latency


class _QuietRequestHandler(MotoRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class _PlainRequestHandler(MotoRequestHandler):
    """Logs each request as plain text (werkzeug colours it, which a log file does not want)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        self.log("info", '"%s" %s %s', self.requestline, code, size)


class MotoServer(ThreadedMotoServer):
    """``ThreadedMotoServer`` that reports a failed bind instead of leaving ``start()`` hanging."""

    def __init__(self, ip_address: str, port: int, log_requests: bool):
        super().__init__(ip_address=ip_address, port=port, verbose=False)
        self._handler = _PlainRequestHandler if log_requests else _QuietRequestHandler
        self.startup_error: BaseException | None = None

    def _server_entry(self) -> None:
        try:
            app = latency.middleware(DomainDispatcherApplication(create_backend_app))
            self._server = make_server(
                self._ip_address, self._port, app, True, request_handler=self._handler
            )
        except BaseException as exc:  # werkzeug exits (SystemExit) when the port is taken
            self.startup_error = exc
            self._server_ready_event.set()
            return
        self._server_ready_event.set()
        self._server.serve_forever(poll_interval=0.1)  # how long stop() waits at most
