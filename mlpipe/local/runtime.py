"""The local SageMaker runtime: InvokeEndpoint over HTTP for the endpoints in the embedded AWS.

:class:`LocalRuntime` serves ``POST /endpoints/<name>/invocations`` as the ``sagemaker-runtime``
API does, so code that calls ``invoke_endpoint`` with boto3 runs unchanged once it is pointed at
it (``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``, or ``endpoint_url=`` on the client).

It reads what to serve from the SageMaker and S3 APIs of the AWS it is given, as SageMaker's
front end does:

- ``DescribeEndpoint`` gives the endpoint's status, its live endpoint configuration and each
  variant's ``CurrentWeight``. It is called again when the previous answer is older than
  ``refresh_seconds`` (0: on every request), so weight changes and endpoint updates are followed
  without a restart. While an update is in progress the previous configuration keeps serving.
- When the live configuration or the endpoint's ``LastModifiedTime`` changes,
  ``DescribeEndpointConfig``, ``DescribeModel`` (``ModelDataUrl``) and ``HeadObject`` on each
  variant's artifact resolve what each variant runs.
- Each artifact (a SageMaker ``model.tar.gz`` with ``code/inference.py``) is downloaded and
  loaded once per (model name, S3 location, ETag, VersionId): extracted into a directory of its
  own, its ``inference.py`` loaded as a fresh module, and ``model_fn(model_dir)`` called. Requests
  go through ``input_fn``, ``predict_fn`` and ``output_fn`` (or ``transform_fn``), with the
  defaults of SageMaker's scikit-learn container for those ``inference.py`` does not define.

A variant is picked at random in proportion to the live weights (``rng`` is a ``random.Random``
that tests can seed), or named by the ``X-Amzn-SageMaker-Target-Variant`` header. Answers carry
``x-Amzn-Invoked-Production-Variant``. Errors are AWS JSON errors: ``ValidationError`` (400) for
an endpoint that is missing or not in service and for an unknown target variant; ``ModelError``
(424) with ``OriginalStatusCode``, ``OriginalMessage`` and ``LogStreamArn`` when the model code
fails. Custom attributes (``X-Amzn-SageMaker-Custom-Attributes``) are accepted and not passed to
the model code, which takes none.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import random
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Self
from urllib.parse import unquote, urlsplit

from botocore.exceptions import ClientError

from mlpipe.core.clients import Aws
from mlpipe.local.endpoint_view import (
    Artifact,
    Endpoint,
    RuntimeApiError,
    Variant,
    choose,
    describe,
    validation,
)
from mlpipe.local.logship import LogShipper
from mlpipe.local.metrics import MetricSink
from mlpipe.local.model_code import LoadedModel, ModelCodeError, load_model
from mlpipe.local.service import BackgroundHttpServer

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_REFRESH_SECONDS",
    "ENDPOINT_URL_VARIABLE",
    "Invocation",
    "LoadedModel",
    "LocalRuntime",
    "ModelCodeError",
    "RuntimeApiError",
    "load_model",
]

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4600
DEFAULT_REFRESH_SECONDS = 1.0
"""How long a ``DescribeEndpoint`` answer is used before the endpoint is described again."""

SAGEMAKER_NAMESPACE = "AWS/SageMaker"

ENDPOINT_URL_VARIABLE = "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"
"""The environment variable that points boto3's ``sagemaker-runtime`` clients at a URL."""

MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # InvokeEndpoint's payload limit


@dataclass(frozen=True)
class Invocation:
    """One answered request."""

    body: bytes
    content_type: str
    variant: str
    latency_ms: float


# --- the runtime --------------------------------------------------------------------------------


class LocalRuntime(BackgroundHttpServer):
    """InvokeEndpoint over HTTP, in a thread of this process. Port 0 picks a free port."""

    thread_name = "mlpipe-sagemaker-runtime"

    def __init__(
        self,
        aws: Aws,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        rng: random.Random | None = None,
        refresh_seconds: float = DEFAULT_REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        metrics: MetricSink | None = None,
        logs: LogShipper | None = None,
    ) -> None:
        super().__init__(host, port)
        self.aws = aws
        self.refresh_seconds = refresh_seconds
        self.metrics = metrics
        self.logs = logs
        self._rng = rng or random.Random()
        self._clock = clock
        self._lock = threading.Lock()
        self._rng_lock = threading.Lock()
        self._endpoints: dict[str, Endpoint] = {}
        self._endpoint_locks: dict[str, threading.Lock] = {}
        self._models: dict[Artifact, LoadedModel | ModelCodeError] = {}
        self._model_locks: dict[Artifact, threading.Lock] = {}
        self._workdir: Path | None = None
        self._model_numbers = itertools.count(1)

    # --- lifecycle ---

    @property
    def endpoint_url(self) -> str:
        return self.url

    def environment(self) -> dict[str, str]:
        """The environment that points boto3's sagemaker-runtime clients at this runtime."""
        return {ENDPOINT_URL_VARIABLE: self.endpoint_url}

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _InvocationHandler

    def start(self) -> Self:
        if not self.running:
            self._workdir = Path(tempfile.mkdtemp(prefix="mlpipe-runtime-"))
        return super().start()

    def stopped(self) -> None:
        with self._lock:
            self._endpoints.clear()
            self._models.clear()
            self._model_locks.clear()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    # --- InvokeEndpoint ---

    def invoke(
        self,
        endpoint_name: str,
        body: bytes,
        *,
        content_type: str | None = None,
        accept: str | None = None,
        target_variant: str | None = None,
    ) -> Invocation:
        """Answer one InvokeEndpoint request; raises :class:`RuntimeApiError` as the API would."""
        received = time.perf_counter()
        endpoint = self._endpoint(endpoint_name)
        variant = choose(endpoint, target_variant, self.aws.account, self._draw)
        try:
            model = self._model(endpoint, variant)
        except RuntimeApiError:
            self._publish(endpoint.name, variant.name, 500)
            raise
        started = time.perf_counter()
        try:
            payload, response_type = model.invoke(body, content_type, accept)
        except ModelCodeError as exc:
            self._publish(endpoint.name, variant.name, exc.status, received, started)
            self._log(endpoint, variant, f"ERROR status {exc.status}: {exc.message}")
            raise self._model_error(endpoint, exc) from exc
        latency_ms = (time.perf_counter() - started) * 1000
        self._publish(endpoint.name, variant.name, 200, received, started)
        return Invocation(payload, response_type, variant.name, latency_ms)

    def _publish(
        self,
        endpoint: str,
        variant: str,
        status: int,
        received: float | None = None,
        started: float | None = None,
    ) -> None:
        """What SageMaker publishes for one invocation, per EndpointName + VariantName: the
        model's answer counted as 4XX/5XX by its status, its latency and SageMaker's overhead
        (the rest of the request's time) in microseconds."""
        if self.metrics is None:
            return
        put, dims = self.metrics.put, {"EndpointName": endpoint, "VariantName": variant}
        put(SAGEMAKER_NAMESPACE, "Invocations", 1, "None", dims)
        put(SAGEMAKER_NAMESPACE, "Invocation4XXErrors", int(400 <= status < 500), "None", dims)
        put(SAGEMAKER_NAMESPACE, "Invocation5XXErrors", int(status >= 500), "None", dims)
        if received is not None and started is not None:
            done = time.perf_counter()
            model_us = (done - started) * 1e6
            put(SAGEMAKER_NAMESPACE, "ModelLatency", round(model_us), "Microseconds", dims)
            overhead_us = (started - received) * 1e6
            put(SAGEMAKER_NAMESPACE, "OverheadLatency", round(overhead_us), "Microseconds", dims)

    def _log(self, endpoint: Endpoint, variant: Variant, message: str) -> None:
        """A line of the variant's container log, where SageMaker writes it."""
        if self.logs is not None:
            group = f"/aws/sagemaker/Endpoints/{endpoint.name}"
            self.logs.write(group, f"{variant.name}/{variant.artifact.model_name}", message)

    def _draw(self) -> float:
        with self._rng_lock:
            return self._rng.random()

    def _model_error(self, endpoint: Endpoint, exc: ModelCodeError) -> RuntimeApiError:
        region = self.aws.region
        group = f"/aws/sagemaker/Endpoints/{endpoint.name}"
        kind = "client" if exc.status < 500 else "server"
        message = (
            f'Received {kind} error ({exc.status}) from primary with message "{exc.message}". '
            f"See https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
            f"#logEventViewer:group={group} in account {self.aws.account} for more information."
        )
        partition = self.aws.partition
        return RuntimeApiError(
            "ModelError",
            424,
            message,
            {
                "OriginalStatusCode": exc.status,
                "OriginalMessage": exc.message,
                "LogStreamArn": f"arn:{partition}:logs:{region}:{self.aws.account}:"
                f"log-group:{group}",
            },
        )

    # --- endpoint state ---

    def _endpoint(self, name: str) -> Endpoint:
        with self._lock:
            lock = self._endpoint_locks.setdefault(name, threading.Lock())
        with lock:
            cached = self._endpoints.get(name)
            now = self._clock()
            if cached is not None and now - cached.checked < self.refresh_seconds:
                return cached
            endpoint = describe(self.aws, name, cached, now)
            with self._lock:
                self._endpoints[name] = endpoint
            return endpoint

    # --- model artifacts ---

    def _model(self, endpoint: Endpoint, variant: Variant) -> LoadedModel:
        artifact = variant.artifact
        with self._lock:
            lock = self._model_locks.setdefault(artifact, threading.Lock())
        try:
            with lock:
                loaded = self._models.get(artifact)
                if loaded is None:
                    loaded = self._load(artifact)
                    with self._lock:
                        self._models[artifact] = loaded
                    what = loaded.message if isinstance(loaded, ModelCodeError) else "loaded"
                    self._log(endpoint, variant, f"model {artifact.model_name}: {what}")
            if isinstance(loaded, ModelCodeError):
                raise loaded
        except ModelCodeError as exc:
            raise self._model_error(endpoint, exc) from exc
        return loaded

    def _load(self, artifact: Artifact) -> LoadedModel | ModelCodeError:
        """The loaded model, or the error its archive or code gives every time (kept, like the
        model). Raises :class:`ModelCodeError` for a download that may succeed when retried."""
        if artifact.problem:
            return ModelCodeError(500, artifact.problem)
        if self._workdir is None:
            raise RuntimeError("The local SageMaker runtime is not running.")
        directory = self._workdir / f"model-{next(self._model_numbers)}"
        directory.mkdir()
        archive = directory / "model.tar.gz"
        request: dict[str, Any] = {"Bucket": artifact.bucket, "Key": artifact.key}
        if artifact.version_id:
            request["VersionId"] = artifact.version_id
        try:
            response = self.aws.client("s3").get_object(**request)
            with archive.open("wb") as out:
                shutil.copyfileobj(response["Body"], out)
            return load_model(archive, directory / "model")
        except ClientError as exc:
            url = f"s3://{artifact.bucket}/{artifact.key}"
            raise ModelCodeError(500, f"cannot download {url}: {exc}") from exc
        except ModelCodeError as exc:
            log.warning("model %s failed to load: %s", artifact.model_name, exc.message)
            return exc
        finally:
            archive.unlink(missing_ok=True)


# --- HTTP ---------------------------------------------------------------------------------------


class _InvocationHandler(BaseHTTPRequestHandler):
    server: Any  # the ThreadingHTTPServer, whose `owner` is the LocalRuntime
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "mlpipe-sagemaker-runtime"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_POST(self) -> None:
        request_id = str(uuid.uuid4())
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length > 0 else b""
            name = self._endpoint_name()
            if length > MAX_PAYLOAD_BYTES:
                raise validation(
                    f"Request payload is {length} bytes, more than the maximum of "
                    f"{MAX_PAYLOAD_BYTES} bytes."
                )
            result = self.server.owner.invoke(
                name,
                body,
                content_type=self.headers.get("Content-Type"),
                accept=self.headers.get("Accept"),
                target_variant=self.headers.get("X-Amzn-SageMaker-Target-Variant"),
            )
        except RuntimeApiError as exc:
            self._error(request_id, exc)
            return
        except Exception as exc:
            log.exception("InvokeEndpoint failed")
            self._error(request_id, RuntimeApiError("InternalFailure", 500, str(exc)))
            return
        self._send(
            200,
            result.body,
            {
                "Content-Type": result.content_type,
                "x-Amzn-Invoked-Production-Variant": result.variant,
                "x-amzn-RequestId": request_id,
            },
        )

    def do_GET(self) -> None:
        self._unknown()

    do_PUT = do_DELETE = do_PATCH = do_GET

    def _unknown(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > 0:
            self.rfile.read(length)
        self._error(
            str(uuid.uuid4()),
            RuntimeApiError("UnknownOperationException", 404, "Unknown operation"),
        )

    def _endpoint_name(self) -> str:
        parts = urlsplit(self.path).path.split("/")
        if len(parts) != 4 or parts[1] != "endpoints" or parts[3] != "invocations" or not parts[2]:
            raise RuntimeApiError("UnknownOperationException", 404, "Unknown operation")
        return unquote(parts[2])

    def _error(self, request_id: str, error: RuntimeApiError) -> None:
        self._send(
            error.status,
            json.dumps(error.body()).encode(),
            {
                "Content-Type": "application/x-amz-json-1.1",
                "x-amzn-ErrorType": error.code,
                "x-amzn-RequestId": request_id,
            },
        )

    def _send(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)
