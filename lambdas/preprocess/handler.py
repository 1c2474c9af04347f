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

Deployed with ``inference_common`` (``lambdas/common``) beside it, it imports only that module,
the standard library and boto3.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import re
import time
import uuid
from typing import Any

import inference_common as common
from boto3.dynamodb.types import TypeSerializer
from inference_common import UpstreamError, env_int, to_dynamo

# Clocks are module attributes so tests can replace them.
_now = time.monotonic  # drives the SSM cache TTL
_wall = time.time  # drives timestamps and expirationTime

# Keeps the stored item well under DynamoDB's 400 KB item limit.
_MAX_FEATURES_BYTES = 256_000
# The largest body worth parsing: the features' limit plus room for the other fields.
_MAX_BODY_BYTES = 300_000
_FIELDS = ("features", "variant", "version")
_VARIANT = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
_VERSION = re.compile(r"v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?")
_HASH_VALUE = re.compile(r"(?P<hash>[0-9a-f]{64})(-[A-Za-z0-9._-]{1,64})?")

_serializer = TypeSerializer()
_runtime = common.Runtime("preprocess", now=lambda: _now())
_client, _log, logger = _runtime.client, _runtime.log, _runtime.logger


class BadRequest(ValueError):
    """The request can never succeed as sent (answered with 400)."""


def _response(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(body),
    }


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
        body = json.loads(raw, parse_int=common.parse_int)
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
            raise BadRequest(f"'{name}' must be a {name} name, got {common.describe(value)}")
    return body


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
    common.check_features(features, BadRequest)
    if len(json.dumps(features, separators=(",", ":"))) > _MAX_FEATURES_BYTES:
        raise BadRequest(f"'features' is larger than {_MAX_FEATURES_BYTES} bytes as JSON")
    return features


def _target_variant(body: dict[str, Any], deployment: common.Deployment) -> str | None:
    variant, version = body.get("variant"), body.get("version")
    if variant is not None and version is not None:
        raise BadRequest("give either 'variant' or 'version', not both")
    if variant is not None:
        if variant not in deployment.names:
            raise BadRequest(f"unknown variant: {variant!r}")
        return str(variant)
    if version is not None:
        target = deployment.serving(version)
        if target is None:
            raise BadRequest(f"no variant serves version: {version!r}")
        return target
    return None


def _invoke(features: list[int | float], target: str | None) -> tuple[Any, str | None]:
    kwargs: dict[str, Any] = {
        "EndpointName": os.environ["ENDPOINT_NAME"],
        "Body": json.dumps({"instances": [features]}, separators=(",", ":")),
    }
    if target is not None:
        kwargs["TargetVariant"] = target
    predictions, invoked = common.invoke_endpoint(_client("sagemaker-runtime"), 1, **kwargs)
    return predictions[0], invoked


def _score(event: dict[str, Any]) -> dict[str, Any]:
    body = _parse_body(event)
    features = validate_features(body.get("features"))
    check_cache_key(event, body)
    active, deployment = _runtime.params.get()
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
        "modelVersion": _runtime.served_version(deployment, invoked, active),
        "invokedVariant": invoked,
        "predictions": prediction,
        "features": features,
        "expirationTime": int(now) + env_int("PREDICTION_TTL_DAYS", 30) * 86400,
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
