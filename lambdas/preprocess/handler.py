"""Online inference Lambda behind an API Gateway REST (Lambda proxy) integration.

Request body: ``{"features": [numbers...], "variant": str?, "version": str?}``, nothing else.
The features are scored by the SageMaker endpoint ``ENDPOINT_NAME`` and the prediction is
stored in the DynamoDB table ``TABLE_NAME`` before being returned to the caller.

Routing: with neither ``variant`` nor ``version`` the endpoint's variant weights pick the
variant; ``variant`` targets that production variant; ``version`` targets the variant that
serves that model version according to the deployment state in SSM.

Cache key. API Gateway caches ``POST /predict`` on the header ``CACHE_KEY_HEADER`` alone (it
cannot key on the body), so that header must say exactly what the answer depends on. The
handler recomputes it, :func:`features_hash`: the SHA-256 (hex) of the canonical JSON
``{"features": [floats...], "variant": str|null, "version": str|null}`` (sorted keys, no
spaces), optionally followed by ``-`` and up to 64 of ``[A-Za-z0-9._-]`` (a client's own suffix
for a fresh entry). A request without the header, with it twice, or with a value that does not
match its body is refused (400) before anything is scored, so every answer API Gateway caches
with status 200 sits under the hash of the very request that produced it.

Status codes: 200 on success, 400 for any invalid request (naming the field), 502 when the
endpoint fails or answers with something unusable, 500 for anything else.

Environment: ENDPOINT_NAME, TABLE_NAME, ACTIVE_VERSION_PARAM and DEPLOYMENT_PARAM (SSM
parameter names, read together and cached for SSM_CACHE_TTL_SECONDS, default 30),
PREDICTION_TTL_DAYS (item expiry, default 30), FEATURE_COUNT (optional exact feature count),
CACHE_KEY_HEADER (set when the API caches: the header checked above), LOG_LEVEL (default INFO).

This module is deployed on its own and imports only the standard library and boto3.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import re
import sys
import time
import uuid
from decimal import DecimalException
from typing import Any

import boto3
from boto3.dynamodb.types import DYNAMODB_CONTEXT, TypeSerializer
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as EndpointUnreachable

# Clocks and clients are module attributes so tests can replace them.
_now = time.monotonic  # drives the SSM cache TTL
_wall = time.time  # drives timestamps and expirationTime

# Keeps the stored item well under DynamoDB's 400 KB item limit.
_MAX_FEATURES_BYTES = 256_000
# The largest body worth parsing: the features' limit plus room for the other fields.
_MAX_BODY_BYTES = 300_000
# Integers longer than this are refused before Python converts them (DynamoDB keeps 38 digits).
_MAX_INT_DIGITS = 64
_FIELDS = ("features", "variant", "version")
_VARIANT = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
_VERSION = re.compile(r"v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?")
_HASH_VALUE = re.compile(r"(?P<hash>[0-9a-f]{64})(-[A-Za-z0-9._-]{1,64})?")

_CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3})
_clients: dict[str, Any] = {}
_serializer = TypeSerializer()


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {"level": record.levelname, "message": record.getMessage()}
        entry.update(getattr(record, "ctx", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


logger = logging.getLogger("preprocess")
if not logger.handlers:
    _log_handler = logging.StreamHandler(sys.stdout)
    _log_handler.setFormatter(_JsonFormatter())
    logger.addHandler(_log_handler)
    logger.propagate = False
logger.setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())


def _log(level: int, message: str, exc_info: bool = False, **ctx: Any) -> None:
    logger.log(level, message, exc_info=exc_info, extra={"ctx": ctx})


def _client(service: str) -> Any:
    """Return the cached boto3 client for ``service``, creating it on first use."""
    client = _clients.get(service)
    if client is None:
        client = _clients[service] = boto3.client(service, config=_CLIENT_CONFIG)
    return client


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


class BadRequest(ValueError):
    """The request can never succeed as sent (answered with 400)."""


class UpstreamError(RuntimeError):
    """The model endpoint failed or answered with something unusable (answered with 502)."""


class _ParamCache:
    """Active version and deployment state from SSM, refreshed at most once per TTL."""

    def __init__(self) -> None:
        self._value: tuple[str, dict[str, Any]] | None = None
        self._fetched_at = 0.0

    def clear(self) -> None:
        self._value = None

    def get(self) -> tuple[str, dict[str, Any]]:
        ttl = _env_int("SSM_CACHE_TTL_SECONDS", 30)
        if self._value is None or _now() - self._fetched_at >= ttl:
            self._value = self._fetch()
            self._fetched_at = _now()
        return self._value

    @staticmethod
    def _fetch() -> tuple[str, dict[str, Any]]:
        active_name = os.environ["ACTIVE_VERSION_PARAM"]
        deployment_name = os.environ["DEPLOYMENT_PARAM"]
        response = _client("ssm").get_parameters(Names=[active_name, deployment_name])
        values = {p["Name"]: p["Value"] for p in response["Parameters"]}
        missing = [n for n in (active_name, deployment_name) if n not in values]
        if missing:
            raise RuntimeError(f"SSM parameters not found: {missing}")
        deployment = json.loads(values[deployment_name])
        if not isinstance(deployment, dict) or not isinstance(deployment.get("variants"), list):
            raise RuntimeError(f"SSM parameter {deployment_name} has no 'variants' list")
        return values[active_name], deployment


_params = _ParamCache()


def to_dynamo(value: Any) -> Any:
    """Return ``value`` with every number as a DynamoDB-safe Decimal (recursively).

    Raises ValueError for NaN, infinity or numbers DynamoDB cannot store.
    """
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        try:
            number = DYNAMODB_CONTEXT.create_decimal(str(value))
        except DecimalException as exc:
            raise ValueError(f"number out of range for storage: {value!r}") from exc
        if not number.is_finite():
            raise ValueError(f"number must be finite: {value!r}")
        return number
    if isinstance(value, list | tuple):
        return [to_dynamo(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_dynamo(v) for k, v in value.items()}
    raise ValueError(f"unsupported value type: {type(value).__name__}")


def _response(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(body),
    }


class _HugeInt:
    """An integer literal too long to convert: refused with its field's name."""

    def __init__(self, digits: str) -> None:
        self.length = len(digits.lstrip("-"))


def _parse_int(digits: str) -> int | _HugeInt:
    return _HugeInt(digits) if len(digits) > _MAX_INT_DIGITS else int(digits)


def features_hash(
    features: list[int | float], variant: str | None = None, version: str | None = None
) -> str:
    """The cache key of a request: SHA-256 of its canonical JSON (see the module docstring)."""
    canonical = {"features": [float(v) for v in features], "variant": variant, "version": version}
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _parse_body(event: dict[str, Any]) -> dict[str, Any]:
    raw = event.get("body")
    if raw is None or raw == "":
        raise BadRequest("request body is required")
    if not isinstance(raw, str):
        raise BadRequest("request body must be a JSON string")
    if event.get("isBase64Encoded"):
        try:
            raw = base64.b64decode(raw, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise BadRequest("request body is not valid base64-encoded UTF-8") from exc
    if len(raw) > _MAX_BODY_BYTES:
        raise BadRequest(f"request body is larger than {_MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(raw, parse_int=_parse_int)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc.msg}") from exc
    except RecursionError as exc:
        raise BadRequest("request body is nested too deeply") from exc
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    unknown = sorted(set(body) - set(_FIELDS))
    if unknown:
        raise BadRequest(
            f"unknown field(s) {', '.join(map(repr, unknown))}: the body takes "
            + ", ".join(_FIELDS)
        )
    for name, pattern in (("variant", _VARIANT), ("version", _VERSION)):
        value = body.get(name)
        if value is not None and not (isinstance(value, str) and pattern.fullmatch(value)):
            raise BadRequest(f"'{name}' must be a {name} name, got {_describe(value)}")
    return body


def _describe(value: Any) -> str:
    if isinstance(value, _HugeInt):
        return f"a {value.length}-digit integer"
    if isinstance(value, str):
        return repr(value[:70])
    return "null" if value is None else f"a JSON {type(value).__name__}"


def _header_values(event: dict[str, Any], name: str) -> list[str]:
    multi = event.get("multiValueHeaders") or {}
    single = event.get("headers") or {}
    found = [v for k, vs in multi.items() if k.lower() == name.lower() for v in vs or ()]
    if not found:
        found = [v for k, v in single.items() if k.lower() == name.lower() and v is not None]
    return [str(v) for v in found]


def check_cache_key(event: dict[str, Any], body: dict[str, Any]) -> None:
    """Refuse a request whose cache key header does not say what it asks (when caching)."""
    name = os.environ.get("CACHE_KEY_HEADER", "").strip()
    if not name:
        return
    values = _header_values(event, name)
    if not values:
        raise BadRequest(f"header {name} is required: the hash of the request (features_hash)")
    if len(values) > 1:
        raise BadRequest(f"header {name} must be sent once, got {len(values)} values")
    match = _HASH_VALUE.fullmatch(values[0])
    if match is None:
        raise BadRequest(f"header {name} must be a SHA-256 hex digest, optionally -suffix")
    expected = features_hash(body["features"], body.get("variant"), body.get("version"))
    if match["hash"] != expected:
        raise BadRequest(f"header {name} does not match the request's features_hash")


def validate_features(features: Any) -> list[int | float]:
    """Check ``features`` is a non-empty list of finite numbers of the expected count."""
    if not isinstance(features, list) or not features:
        raise BadRequest("'features' must be a non-empty list of numbers")
    expected = _env_int("FEATURE_COUNT", 0)
    if expected and len(features) != expected:
        raise BadRequest(f"'features' must have {expected} values, got {len(features)}")
    for i, value in enumerate(features):
        if isinstance(value, _HugeInt):
            raise BadRequest(f"'features[{i}]' is out of range: {_describe(value)}")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BadRequest(f"'features[{i}]' must be a number, got {_describe(value)}")
        try:
            to_dynamo(value)
        except ValueError as exc:
            raise BadRequest(f"'features[{i}]' must be a finite number: {exc}") from exc
    if len(json.dumps(features, separators=(",", ":"))) > _MAX_FEATURES_BYTES:
        raise BadRequest(f"'features' is larger than {_MAX_FEATURES_BYTES} bytes as JSON")
    return features


def _target_variant(body: dict[str, Any], deployment: dict[str, Any]) -> str | None:
    variant, version = body.get("variant"), body.get("version")
    if variant is not None and version is not None:
        raise BadRequest("give either 'variant' or 'version', not both")
    variants = [v for v in deployment["variants"] if isinstance(v, dict)]
    if variant is not None:
        if not isinstance(variant, str) or variant not in {v.get("name") for v in variants}:
            raise BadRequest(f"unknown variant: {variant!r}")
        return variant
    if version is not None:
        for v in variants:
            if isinstance(version, str) and v.get("version") == version:
                return str(v["name"])
        raise BadRequest(f"no variant serves version: {version!r}")
    return None


def _version_of(variant: str | None, active: str, deployment: dict[str, Any]) -> str:
    for v in deployment["variants"]:
        if isinstance(v, dict) and v.get("name") == variant and v.get("version"):
            return str(v["version"])
    _log(
        logging.WARNING,
        "invoked variant not in deployment state; using active version",
        variant=variant,
        modelVersion=active,
    )
    return active


def _invoke(features: list[int | float], target: str | None) -> tuple[Any, str | None]:
    kwargs: dict[str, Any] = {
        "EndpointName": os.environ["ENDPOINT_NAME"],
        "ContentType": "application/json",
        "Accept": "application/json",
        "Body": json.dumps({"instances": [features]}, separators=(",", ":")),
    }
    if target is not None:
        kwargs["TargetVariant"] = target
    try:
        response = _client("sagemaker-runtime").invoke_endpoint(**kwargs)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "Unknown")
        raise UpstreamError(f"model endpoint error: {code}") from exc
    except (EndpointUnreachable, HTTPClientError) as exc:
        raise UpstreamError(f"model endpoint unreachable: {type(exc).__name__}") from exc
    try:
        predictions = json.loads(response["Body"].read())["predictions"]
    except (ValueError, KeyError, TypeError) as exc:
        raise UpstreamError("model endpoint returned an invalid response") from exc
    if not isinstance(predictions, list) or len(predictions) != 1:
        raise UpstreamError("model endpoint returned an unexpected number of predictions")
    return predictions[0], response.get("InvokedProductionVariant")


def _score(event: dict[str, Any]) -> dict[str, Any]:
    body = _parse_body(event)
    features = validate_features(body.get("features"))
    check_cache_key(event, body)
    active, deployment = _params.get()
    target = _target_variant(body, deployment)

    started = _now()
    prediction, invoked = _invoke(features, target)
    latency_ms = round((_now() - started) * 1000, 1)
    try:
        stored_prediction = to_dynamo(prediction)
    except ValueError as exc:
        raise UpstreamError(f"model endpoint returned an unstorable prediction: {exc}") from exc

    now = _wall()
    result = {
        "predictionId": str(uuid.uuid4()),
        "timestamp": int(now * 1000),
        "modelVersion": _version_of(invoked, active, deployment),
        "invokedVariant": invoked,
        "predictions": prediction,
        "features": features,
        "expirationTime": int(now) + _env_int("PREDICTION_TTL_DAYS", 30) * 86400,
    }
    item = {**result, "predictions": stored_prediction, "features": to_dynamo(features)}
    _client("dynamodb").put_item(
        TableName=os.environ["TABLE_NAME"],
        Item={k: _serializer.serialize(v) for k, v in item.items() if v is not None},
    )
    _log(
        logging.INFO,
        "prediction stored",
        predictionId=result["predictionId"],
        variant=invoked,
        modelVersion=result["modelVersion"],
        latency_ms=latency_ms,
    )
    return result


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """API Gateway proxy entry point."""
    try:
        return _response(200, _score(event if isinstance(event, dict) else {}))
    except BadRequest as exc:
        _log(logging.INFO, "bad request", error=str(exc))
        return _response(400, {"error": str(exc)})
    except UpstreamError as exc:
        _log(logging.ERROR, "model endpoint failure", exc_info=True, error=str(exc))
        return _response(502, {"error": str(exc)})
    except Exception:
        _log(logging.ERROR, "unexpected error", exc_info=True)
        return _response(500, {"error": "internal error"})
