"""What the pipeline's inference code shares: the Lambda handlers and the batch job.

Every Lambda deployment package carries this module at its root beside ``handler.py``, and the
batch job's image beside the ``batch_job`` package, so each imports it as the top-level module
``inference_common``. It imports only the standard library and boto3.

The deployment state. mlpipe writes one JSON parameter in Parameter Store saying which model
version each endpoint variant serves and its share of the traffic::

    {"variants": [{"name": str, "version": str, "weight": int 0..100}, ...],
     "champion": str, "challenger": str | null, "operation": {...}?}

:func:`parse_deployment` is the one reader of that schema: whatever does not match it is a
:class:`DeploymentStateError` (fields a reader does not use, such as ``operation``, are ignored).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from decimal import DecimalException
from typing import Any, NamedTuple

import boto3
from boto3.dynamodb.types import DYNAMODB_CONTEXT
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as EndpointUnreachable

CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3})
# Integers longer than this are refused before Python converts them (DynamoDB keeps 38 digits).
MAX_INT_DIGITS = 64
# What a failed call to AWS raises: an error answer, or no answer at all.
CALL_ERRORS = (ClientError, EndpointUnreachable, HTTPClientError)


# --- The deployment state -------------------------------------------------------------------


class DeploymentStateError(ValueError):
    """The deployment state parameter does not follow the schema."""


class VariantState(NamedTuple):
    """An endpoint variant, the model version it serves and its percent of the traffic."""

    name: str
    version: str
    weight: int


class Deployment(NamedTuple):
    """The deployment state as the readers see it."""

    variants: tuple[VariantState, ...]
    champion: str
    challenger: str | None = None

    def version_of(self, variant: str | None) -> str | None:
        """The model version the variant serves; None for a variant not in the state."""
        return next((v.version for v in self.variants if v.name == variant), None)

    def serving(self, version: str) -> str | None:
        """The first variant serving ``version``; None when none does."""
        return next((v.name for v in self.variants if v.version == version), None)

    @property
    def names(self) -> list[str]:
        return [v.name for v in self.variants]


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise DeploymentStateError(f"{where} must be a non-empty string")
    return value


def parse_deployment(text: str) -> Deployment:
    """The deployment state from its JSON text (see the module docstring)."""
    try:
        state = json.loads(text)
    except (TypeError, ValueError, RecursionError) as exc:
        raise DeploymentStateError(f"deployment state is not JSON: {exc}") from exc
    if not isinstance(state, dict) or not isinstance(state.get("variants"), list):
        raise DeploymentStateError("deployment state has no 'variants' list")
    variants = []
    for i, entry in enumerate(state["variants"]):
        if not isinstance(entry, dict):
            raise DeploymentStateError(f"variants[{i}] must be an object")
        weight = entry.get("weight")
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100:
            raise DeploymentStateError(f"variants[{i}].weight must be an integer 0 to 100")
        name = _text(entry.get("name"), f"variants[{i}].name")
        variants.append(
            VariantState(name, _text(entry.get("version"), f"variants[{i}].version"), weight)
        )
    challenger = state.get("challenger")
    return Deployment(
        tuple(variants),
        _text(state.get("champion"), "champion"),
        None if challenger is None else _text(challenger, "challenger"),
    )


class ParamCache:
    """Active version and deployment state from SSM, refreshed at most once per TTL.

    Reads the parameters named by ACTIVE_VERSION_PARAM and DEPLOYMENT_PARAM together; the TTL
    is SSM_CACHE_TTL_SECONDS (default 30).
    """

    def __init__(self, ssm: Callable[[], Any], now: Callable[[], float]) -> None:
        self._ssm = ssm
        self._now = now
        self._value: tuple[str, Deployment] | None = None
        self._fetched_at = 0.0

    def clear(self) -> None:
        self._value = None

    def get(self) -> tuple[str, Deployment]:
        ttl = env_int("SSM_CACHE_TTL_SECONDS", 30)
        if self._value is None or self._now() - self._fetched_at >= ttl:
            self._value = self._fetch()
            self._fetched_at = self._now()
        return self._value

    def _fetch(self) -> tuple[str, Deployment]:
        active_name = os.environ["ACTIVE_VERSION_PARAM"]
        deployment_name = os.environ["DEPLOYMENT_PARAM"]
        response = self._ssm().get_parameters(Names=[active_name, deployment_name])
        values = {p["Name"]: p["Value"] for p in response["Parameters"]}
        missing = [n for n in (active_name, deployment_name) if n not in values]
        if missing:
            raise RuntimeError(f"SSM parameters not found: {missing}")
        try:
            deployment = parse_deployment(values[deployment_name])
        except DeploymentStateError as exc:
            raise RuntimeError(f"SSM parameter {deployment_name}: {exc}") from exc
        return values[active_name], deployment


# --- Runtime helpers ------------------------------------------------------------------------


class Runtime:
    """A handler's process state: its boto3 clients, its JSON logger and its cached parameters
    (``now`` drives the cache's TTL)."""

    def __init__(self, name: str, now: Callable[[], float]) -> None:
        self.clients: dict[str, Any] = {}
        self.logger = json_logger(name)
        self.params = ParamCache(lambda: self.client("ssm"), now)

    def clear(self) -> None:
        """Forget the clients and the parameters (a cold start)."""
        self.clients.clear()
        self.params.clear()

    def client(self, service: str) -> Any:
        """The boto3 client for ``service``, created on first use."""
        found = self.clients.get(service)
        if found is None:
            found = self.clients[service] = boto3.client(service, config=CLIENT_CONFIG)
        return found

    def log(self, level: int, message: str, exc_info: bool = False, **ctx: Any) -> None:
        """Log ``message`` with ``ctx`` as fields of its JSON line."""
        self.logger.log(level, message, exc_info=exc_info, extra={"ctx": ctx})

    def served_version(self, deployment: Deployment, variant: str | None, active: str) -> str:
        """The version behind the variant that answered, else (logged) the active version."""
        version = deployment.version_of(variant)
        if version is None:
            self.log(
                logging.WARNING,
                "invoked variant not in deployment state; using active version",
                variant=variant,
                modelVersion=active,
            )
            return active
        return version


class UpstreamError(RuntimeError):
    """The model endpoint failed or answered with something unusable."""


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {"level": record.levelname, "message": record.getMessage()}
        entry.update(getattr(record, "ctx", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def json_logger(name: str) -> logging.Logger:
    """A logger writing one JSON object a line to stdout (CloudWatch Logs), at LOG_LEVEL."""
    logger = logging.getLogger(name)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(_JsonFormatter())
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())
    return logger


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


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


class HugeInt:
    """An integer literal too long to convert: refused with its field's name."""

    def __init__(self, digits: str) -> None:
        self.length = len(digits.lstrip("-"))


def parse_int(digits: str) -> int | HugeInt:
    """``json.loads``'s ``parse_int`` that does not convert overlong integers."""
    return HugeInt(digits) if len(digits) > MAX_INT_DIGITS else int(digits)


def describe(value: Any) -> str:
    """A JSON value as an error message names it."""
    if isinstance(value, HugeInt):
        return f"a {value.length}-digit integer"
    if isinstance(value, str):
        return repr(value[:70])
    return "null" if value is None else f"a JSON {type(value).__name__}"


def check_features(features: Any, error: type[ValueError]) -> list[int | float]:
    """``features`` when it is a non-empty list of finite, storable numbers (FEATURE_COUNT of
    them when that is set); else raises ``error`` naming what is wrong."""
    if not isinstance(features, list) or not features:
        raise error("'features' must be a non-empty list of numbers")
    expected = env_int("FEATURE_COUNT", 0)
    if expected and len(features) != expected:
        raise error(f"'features' must have {expected} values, got {len(features)}")
    for i, value in enumerate(features):
        if isinstance(value, HugeInt):
            raise error(f"'features[{i}]' is out of range: {describe(value)}")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise error(f"'features[{i}]' must be a number, got {describe(value)}")
        try:
            to_dynamo(value)
        except ValueError as exc:
            raise error(f"'features[{i}]' must be a finite number: {exc}") from exc
    return features


def invoke_endpoint(runtime: Any, count: int, **kwargs: Any) -> tuple[list[Any], str | None]:
    """InvokeEndpoint (JSON in, JSON out) for ``count`` instances: the predictions and the
    variant that served them. Raises UpstreamError when the call fails or the answer does not
    hold one prediction per instance."""
    try:
        response = runtime.invoke_endpoint(
            ContentType="application/json", Accept="application/json", **kwargs
        )
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "Unknown")
        raise UpstreamError(f"model endpoint error: {code}") from exc
    except (EndpointUnreachable, HTTPClientError) as exc:
        raise UpstreamError(f"model endpoint unreachable: {type(exc).__name__}") from exc
    try:
        predictions = json.loads(response["Body"].read())["predictions"]
    except (ValueError, KeyError, TypeError) as exc:
        raise UpstreamError("model endpoint returned an invalid response") from exc
    if not isinstance(predictions, list) or len(predictions) != count:
        raise UpstreamError(
            f"model endpoint returned a wrong number of predictions for {count} instances"
        )
    return predictions, response.get("InvokedProductionVariant")
