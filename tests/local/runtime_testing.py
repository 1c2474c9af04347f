"""Shared by the local API and stream runtime tests: the pipeline converged by mlpipe on the
embedded AWS over HTTP, a fake SageMaker runtime, a controllable clock."""

from __future__ import annotations

import contextlib
import json
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from mlpipe.core.clients import Aws, AwsTarget
from mlpipe.core.context import Context
from mlpipe.local import moto_ext
from mlpipe.local.functions import LocalFunctions, pipeline_sources
from mlpipe.local.server import LocalAws
from mlpipe.spec import Names, load_spec
from tests.conftest import SPEC_PATH, windows_on
from tests.fake_time import FakeTime
from tests.resources.serving import everything
from tests.support import converge

REGION = "us-east-1"


class Clock:
    """Seconds that pass only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Pipeline:
    """The converged pipeline on a running embedded AWS."""

    aws: LocalAws
    ctx: Context
    clients: Callable[[str], Any]

    @property
    def names(self) -> Names:
        return self.ctx.names

    def functions(self, sagemaker: FakeSageMaker, **kwargs: Any) -> LocalFunctions:
        return LocalFunctions(
            self.clients,
            pipeline_sources(self.names),
            endpoint_url=self.aws.endpoint_url,
            region=REGION,
            sagemaker_runtime_url=sagemaker.url,
            **kwargs,
        )


@contextlib.contextmanager
def converged_pipeline() -> Iterator[Pipeline]:
    """mlpipe's own serving resources, applied to an in-process local AWS."""
    installed_before = moto_ext.extensions_installed()
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
            patch.delenv(name, raising=False)
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.setenv("AWS_DEFAULT_REGION", REGION)
        time = FakeTime()  # the windows' clock and the run's: waits move it, nothing sleeps
        windows_on(patch, time)
        with LocalAws(port=0) as local:
            aws = Aws(AwsTarget(region=REGION, endpoint_url=local.endpoint_url, local=True))
            spec = load_spec(SPEC_PATH)
            # The fake SageMaker scores toy rows of any length, not the spec's feature count.
            toy = spec.lambdas.model_copy(update={"feature_count": None})
            spec = spec.model_copy(update={"lambdas": toy})
            names = Names(spec.pipeline, spec.environment, aws.account, aws.region)
            ctx = Context(aws, spec, names, clock=time.clock(), consistency_timeout=5)
            converge(everything(ctx))
            yield Pipeline(local, ctx, aws.client)
    if not installed_before:
        moto_ext.uninstall_extensions()


# --- a fake SageMaker runtime ------------------------------------------------------------------


@dataclass
class FakeSageMaker:
    """Answers InvokeEndpoint with one prediction per instance, naming ``variant`` as the
    variant that served it. An instance whose first feature is in ``nan_for`` gets a NaN
    prediction (which the handlers cannot store) that many times."""

    variant: str = "ModelB"
    nan_for: dict[float, int] = field(default_factory=dict)
    calls: list[dict[str, Any]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def reset(self) -> None:
        self.variant = "ModelB"
        self.nan_for.clear()
        self.calls.clear()

    def answer(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        instances = json.loads(body)["instances"]
        self.calls.append({"path": path, "headers": headers, "instances": instances})
        predictions: list[Any] = []
        for instance in instances:
            if self.nan_for.get(instance[0], 0) > 0:
                self.nan_for[instance[0]] -= 1
                predictions.append(math.nan)
            else:
                predictions.append(round(sum(instance), 6))
        return 200, json.dumps({"predictions": predictions}).encode()


@contextlib.contextmanager
def fake_sagemaker_server() -> Iterator[FakeSageMaker]:
    fake = FakeSageMaker()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, payload = fake.answer(self.path, dict(self.headers.items()), body)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Amzn-Invoked-Production-Variant", fake.variant)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    fake.server = server
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
