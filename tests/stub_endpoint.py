"""A stand-in for an AWS endpoint on a free port, for tests of the client side only.

It answers STS GetCallerIdentity as AWS does (query protocol, XML); the first ``throttle``
requests get AWS's throttling error; every other call gets 403 with no body, as a proxy in front
of a real endpoint might. ``requests`` counts what reached it, retries included.
"""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self

ACCOUNT = "123456789012"
IDENTITY = f"""<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <GetCallerIdentityResult>
    <Arn>arn:aws:iam::{ACCOUNT}:user/stub</Arn>
    <UserId>AIDASTUBSTUBSTUB</UserId>
    <Account>{ACCOUNT}</Account>
  </GetCallerIdentityResult>
  <ResponseMetadata><RequestId>stub-1</RequestId></ResponseMetadata>
</GetCallerIdentityResponse>"""
# https://docs.aws.amazon.com/STS/latest/APIReference/CommonErrors.html: Throttling, HTTP 400.
THROTTLED = """<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error>
  <RequestId>stub-2</RequestId>
</ErrorResponse>"""


def closed_port() -> int:
    """A local port nothing listens on: connecting to it is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class StubEndpoint:
    def __init__(self, throttle: int = 0) -> None:
        self.requests = 0
        self.throttle = throttle
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                stub.requests += 1
                if stub.requests <= stub.throttle:
                    self._answer(400, THROTTLED)
                elif b"Action=GetCallerIdentity" in body:
                    self._answer(200, IDENTITY)
                else:
                    self._answer(403, "")

            def do_GET(self) -> None:
                stub.requests += 1
                self._answer(403, "")

            def _answer(self, status: int, text: str) -> None:
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop answering: later connections are refused."""
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
