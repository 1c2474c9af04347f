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
import csv
import importlib.util
import io
import itertools
import json
import logging
import math
import random
import shutil
import tarfile
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any, Self
from urllib.parse import unquote, urlsplit

from botocore.exceptions import ClientError

from mlpipe.core.clients import Aws
from mlpipe.local.logship import LogShipper
from mlpipe.local.metrics import MetricSink
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
    "VariantStats",
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

JSON = "application/json"
CSV = "text/csv"
NPY = "application/x-npy"
RECENT_LATENCIES = 1000
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # InvokeEndpoint's payload limit

# Endpoint statuses in which a deployed configuration answers requests; during an update the
# previous configuration serves until the new one is in place.
SERVING_STATUSES = frozenset(
    {"InService", "Updating", "SystemUpdating", "RollingBack", "UpdateRollbackFailed"}
)


# --- errors -------------------------------------------------------------------------------------


class RuntimeApiError(Exception):
    """An error answered as the sagemaker-runtime API answers it: code, HTTP status, fields."""

    def __init__(
        self, code: str, status: int, message: str, fields: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message
        self.fields = dict(fields or {})

    def body(self) -> dict[str, Any]:
        return {"message": self.message, **self.fields}


class ModelCodeError(Exception):
    """The model code failed; ``status`` is what its container would have answered."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _validation(message: str) -> RuntimeApiError:
    return RuntimeApiError("ValidationError", 400, message)


def _status_of(exc: BaseException) -> int:
    """The HTTP status a serving container answers for an exception from the model code: the
    exception's own ``status_code`` when it has one in 400-599, else 500."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and 400 <= status <= 599:
        return status
    return 500


# --- the model code -----------------------------------------------------------------------------


def _media_type(value: str | None, default: str) -> str:
    media = (value or "").split(";", 1)[0].strip().lower()
    return default if media in ("", "*/*") else media


def _default_model_fn(model_dir: str) -> Any:
    raise NotImplementedError("inference.py does not define model_fn(model_dir)")


def _default_input_fn(body: bytes, content_type: str) -> Any:
    """SageMaker's scikit-learn container: JSON, CSV or NPY into a NumPy array."""
    import numpy as np

    media = _media_type(content_type, JSON)
    if media == JSON:
        return np.array(json.loads(body))
    if media == CSV:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        rows = [row for row in csv.reader(io.StringIO(text)) if row]
        return np.array(rows, dtype=np.float64)
    if media == NPY:
        return np.load(io.BytesIO(body), allow_pickle=False)
    raise ModelCodeError(415, f"Content type {content_type} is not supported by this framework.")


def _default_predict_fn(data: Any, model: Any) -> Any:
    return model.predict(data)


def _default_output_fn(prediction: Any, accept: str) -> tuple[bytes, str]:
    import numpy as np

    media = _media_type(accept, JSON)
    array = np.asarray(prediction)
    if media == JSON:
        return json.dumps(array.tolist()).encode(), JSON
    if media == CSV:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerows(array.reshape(len(array), -1).tolist() if array.ndim else [[array]])
        return out.getvalue().encode(), CSV
    if media == NPY:
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        return buffer.getvalue(), NPY
    raise ModelCodeError(415, f"Accept type {accept} is not supported by this framework.")


_module_numbers = itertools.count(1)


def _load_module(path: Path) -> ModuleType:
    """``inference.py`` as a fresh module: models never share module state."""
    name = f"mlpipe_local_model_{next(_module_numbers)}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModelCodeError(500, f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _extract(archive: Path, directory: Path) -> None:
    """Extract a model archive, refusing members that would land outside ``directory``."""
    with tarfile.open(archive, "r:*") as tar:
        members = tar.getmembers()
        for member in members:
            path = PurePosixPath(member.name)
            if path.is_absolute() or ".." in path.parts:
                raise ModelCodeError(500, f"model archive member outside the archive: {path}")
            if not (member.isfile() or member.isdir()):
                raise ModelCodeError(500, f"model archive member is not a file: {path}")
        if hasattr(tarfile, "data_filter"):
            tar.extractall(directory, members=members, filter="data")
        else:  # pragma: no cover - Python < 3.11.4; members were checked above
            tar.extractall(directory, members=members)


@dataclass
class LoadedModel:
    """A model archive loaded as SageMaker loads it: ``model_fn`` run on the extracted archive,
    and the request handlers of ``code/inference.py`` (or SageMaker's defaults)."""

    model_dir: Path
    module: ModuleType
    model: Any

    def _handler(self, name: str, default: Callable[..., Any]) -> Callable[..., Any]:
        handler = getattr(self.module, name, None)
        return handler if callable(handler) else default

    def invoke(
        self, body: bytes, content_type: str | None = None, accept: str | None = None
    ) -> tuple[bytes, str]:
        """Run one request through the handlers; returns the response body and content type.

        Raises :class:`ModelCodeError` with the status the container would answer when the
        model code raises.
        """
        content_type = content_type or JSON
        accept = JSON if accept in (None, "", "*/*") else accept
        try:
            transform = getattr(self.module, "transform_fn", None)
            if callable(transform):
                result = transform(self.model, body, content_type, accept)
            else:
                data = self._handler("input_fn", _default_input_fn)(body, content_type)
                prediction = self._handler("predict_fn", _default_predict_fn)(data, self.model)
                result = self._handler("output_fn", _default_output_fn)(prediction, accept)
        except ModelCodeError:
            raise
        except Exception as exc:
            raise ModelCodeError(_status_of(exc), f"{type(exc).__name__}: {exc}") from exc
        payload, response_type = result if isinstance(result, tuple) else (result, accept)
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        return bytes(payload), str(response_type)


def load_model(archive: Path, directory: Path) -> LoadedModel:
    """Extract ``archive`` (a SageMaker ``model.tar.gz``) into ``directory`` and load it.

    Raises :class:`ModelCodeError` when the archive has no ``code/inference.py`` or its code fails
    to load.
    """
    directory.mkdir(parents=True, exist_ok=True)
    try:
        _extract(archive, directory)
    except (tarfile.TarError, OSError) as exc:
        raise ModelCodeError(500, f"cannot extract the model archive: {exc}") from exc
    script = directory / "code" / "inference.py"
    if not script.is_file():
        raise ModelCodeError(500, "the model archive has no code/inference.py")
    try:
        module = _load_module(script)
        model_fn = getattr(module, "model_fn", None)
        model = (model_fn if callable(model_fn) else _default_model_fn)(str(directory))
    except ModelCodeError:
        raise
    except Exception as exc:
        raise ModelCodeError(500, f"loading the model failed: {type(exc).__name__}: {exc}") from exc
    return LoadedModel(directory, module, model)


# --- what an endpoint serves --------------------------------------------------------------------


@dataclass(frozen=True)
class _Artifact:
    """What a variant runs: a model's archive in S3 at one ETag/VersionId, or why it cannot."""

    model_name: str
    bucket: str = ""
    key: str = ""
    etag: str = ""
    version_id: str | None = None
    problem: str | None = None


@dataclass(frozen=True)
class _Variant:
    name: str
    weight: float
    artifact: _Artifact


@dataclass(frozen=True)
class _Endpoint:
    name: str
    config_name: str
    last_modified: Any
    configured: dict[str, tuple[_Artifact, float]]
    variants: tuple[_Variant, ...]
    checked: float


@dataclass(frozen=True)
class Invocation:
    """One answered request."""

    body: bytes
    content_type: str
    variant: str
    latency_ms: float


@dataclass
class VariantStats:
    """Server-side figures for one variant of one endpoint: model code time per request."""

    invocations: int = 0
    model_errors: int = 0
    total_ms: float = 0.0
    recent_ms: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT_LATENCIES))

    @property
    def mean_ms(self) -> float:
        return self.total_ms / self.invocations if self.invocations else 0.0

    def percentile_ms(self, q: float) -> float:
        """The ``q`` quantile (0..1) of the latest latencies, nearest rank."""
        values = sorted(self.recent_ms)
        if not values:
            return 0.0
        rank = min(len(values), max(1, math.ceil(q * len(values))))
        return values[rank - 1]

    def copy(self) -> VariantStats:
        return VariantStats(
            self.invocations, self.model_errors, self.total_ms, deque(self.recent_ms)
        )


def _parse_s3_url(url: str) -> tuple[str, str] | None:
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or not parts.path.strip("/"):
        return None
    return parts.netloc, parts.path.lstrip("/")


def _model_data_url(model: Mapping[str, Any]) -> str | None:
    containers = [model.get("PrimaryContainer"), *(model.get("Containers") or [])]
    for container in containers:
        if not container:
            continue
        if container.get("ModelDataUrl"):
            return str(container["ModelDataUrl"])
        source = (container.get("ModelDataSource") or {}).get("S3DataSource") or {}
        if source.get("CompressionType") == "Gzip" and source.get("S3Uri"):
            return str(source["S3Uri"])
    return None


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
        self._endpoints: dict[str, _Endpoint] = {}
        self._endpoint_locks: dict[str, threading.Lock] = {}
        self._models: dict[_Artifact, LoadedModel | ModelCodeError] = {}
        self._model_locks: dict[_Artifact, threading.Lock] = {}
        self._stats: dict[tuple[str, str], VariantStats] = {}
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

    # --- figures ---

    def stats(self) -> dict[str, dict[str, VariantStats]]:
        """Per endpoint and variant: invocations, model errors and model code latency."""
        with self._lock:
            result: dict[str, dict[str, VariantStats]] = {}
            for (endpoint, variant), stats in self._stats.items():
                result.setdefault(endpoint, {})[variant] = stats.copy()
            return result

    def _record(self, endpoint: str, variant: str, latency_ms: float | None) -> None:
        with self._lock:
            stats = self._stats.setdefault((endpoint, variant), VariantStats())
            stats.invocations += 1
            if latency_ms is None:
                stats.model_errors += 1
            else:
                stats.total_ms += latency_ms
                stats.recent_ms.append(latency_ms)

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
        variant = self._choose(endpoint, target_variant)
        try:
            model = self._model(endpoint, variant)
        except RuntimeApiError:
            self._publish(endpoint.name, variant.name, 500)
            raise
        started = time.perf_counter()
        try:
            payload, response_type = model.invoke(body, content_type, accept)
        except ModelCodeError as exc:
            self._record(endpoint.name, variant.name, None)
            self._publish(endpoint.name, variant.name, exc.status, received, started)
            self._log(endpoint, variant, f"ERROR status {exc.status}: {exc.message}")
            raise self._model_error(endpoint, exc) from exc
        latency_ms = (time.perf_counter() - started) * 1000
        self._record(endpoint.name, variant.name, latency_ms)
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

    def _log(self, endpoint: _Endpoint, variant: _Variant, message: str) -> None:
        """A line of the variant's container log, where SageMaker writes it."""
        if self.logs is not None:
            group = f"/aws/sagemaker/Endpoints/{endpoint.name}"
            self.logs.write(group, f"{variant.name}/{variant.artifact.model_name}", message)

    def _not_found(self, name: str) -> RuntimeApiError:
        return _validation(f"Endpoint {name} of account {self.aws.account} not found.")

    def _model_error(self, endpoint: _Endpoint, exc: ModelCodeError) -> RuntimeApiError:
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

    def _choose(self, endpoint: _Endpoint, target: str | None) -> _Variant:
        if target:
            for variant in endpoint.variants:
                if variant.name == target:
                    return variant
            raise _validation(
                f"Endpoint {endpoint.name} of account {self.aws.account} has no production "
                f"variant named {target}."
            )
        weighted = [v for v in endpoint.variants if v.weight > 0]
        if not weighted:
            raise _validation(
                f"Endpoint {endpoint.name} has no variant with a positive weight; "
                "name a variant with TargetVariant."
            )
        with self._rng_lock:
            point = self._rng.random() * sum(v.weight for v in weighted)
        for variant in weighted:
            point -= variant.weight
            if point < 0:
                return variant
        return weighted[-1]

    # --- endpoint state ---

    def _endpoint(self, name: str) -> _Endpoint:
        with self._lock:
            lock = self._endpoint_locks.setdefault(name, threading.Lock())
        with lock:
            cached = self._endpoints.get(name)
            now = self._clock()
            if cached is not None and now - cached.checked < self.refresh_seconds:
                return cached
            endpoint = self._describe(name, cached, now)
            with self._lock:
                self._endpoints[name] = endpoint
            return endpoint

    def _describe(self, name: str, cached: _Endpoint | None, now: float) -> _Endpoint:
        sagemaker = self.aws.client("sagemaker")
        try:
            described = sagemaker.describe_endpoint(EndpointName=name)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("ValidationException", "404"):
                raise self._not_found(name) from exc
            raise
        if described.get("EndpointStatus") not in SERVING_STATUSES:
            raise self._not_found(name)
        config_name = described["EndpointConfigName"]
        last_modified = described.get("LastModifiedTime")
        if cached and (cached.config_name, cached.last_modified) == (config_name, last_modified):
            configured = cached.configured
        else:
            configured = self._configured(config_name)
        variants = []
        for variant in described.get("ProductionVariants") or []:
            found = configured.get(variant["VariantName"])
            if found is None:
                continue
            artifact, initial_weight = found
            weight = variant.get("CurrentWeight", variant.get("DesiredWeight", initial_weight))
            variants.append(_Variant(variant["VariantName"], float(weight), artifact))
        return _Endpoint(name, config_name, last_modified, configured, tuple(variants), now)

    def _configured(self, config_name: str) -> dict[str, tuple[_Artifact, float]]:
        """Each variant of an endpoint configuration: its artifact and its initial weight."""
        sagemaker = self.aws.client("sagemaker")
        config = sagemaker.describe_endpoint_config(EndpointConfigName=config_name)
        artifacts: dict[str, _Artifact] = {}
        configured = {}
        for variant in config.get("ProductionVariants") or []:
            model_name = variant["ModelName"]
            if model_name not in artifacts:
                artifacts[model_name] = self._artifact(model_name)
            weight = float(variant.get("InitialVariantWeight", 1.0))
            configured[variant["VariantName"]] = (artifacts[model_name], weight)
        return configured

    def _artifact(self, model_name: str) -> _Artifact:
        try:
            model = self.aws.client("sagemaker").describe_model(ModelName=model_name)
        except ClientError as exc:
            return _Artifact(model_name, problem=f"cannot describe model {model_name}: {exc}")
        url = _model_data_url(model)
        location = _parse_s3_url(url) if url else None
        if location is None:
            return _Artifact(
                model_name,
                problem=f"model {model_name} has no S3 model.tar.gz (ModelDataUrl: {url}); the "
                "local runtime runs model archives with code/inference.py",
            )
        bucket, key = location
        try:
            head = self.aws.client("s3").head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            return _Artifact(model_name, bucket, key, problem=f"cannot read {url}: {exc}")
        return _Artifact(
            model_name, bucket, key, head.get("ETag", ""), head.get("VersionId") or None
        )

    # --- model artifacts ---

    def _model(self, endpoint: _Endpoint, variant: _Variant) -> LoadedModel:
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
            self._record(endpoint.name, variant.name, None)
            raise self._model_error(endpoint, exc) from exc
        return loaded

    def _load(self, artifact: _Artifact) -> LoadedModel | ModelCodeError:
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
                raise _validation(
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
