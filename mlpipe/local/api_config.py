"""The configuration of a REST API as API Gateway serves it, read from the embedded AWS: its
routes and methods (``ApiKeyRequired``, the Lambda proxy integration), its stages' method
settings (caching, throttling), its keys and usage plans (:mod:`mlpipe.local.api` serves it).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from mlpipe.local.functions import ClientFactory

__all__ = [
    "ApiConfig",
    "ApiKey",
    "ApiNotFoundError",
    "Method",
    "Route",
    "Throttle",
    "load_api_config",
]

DEFAULT_CACHE_TTL = 300
_LAMBDA_URI = re.compile(r":lambda:path/[^/]+/functions/(?P<arn>.+)/invocations$")
_PARAMETER = re.compile(r"^\{(?P<name>[^{}+]+)(?P<greedy>\+?)\}$")


class ApiNotFoundError(LookupError):
    """No REST API of that name in the embedded AWS."""


# --- configuration ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Method:
    http_method: str
    authorization_type: str
    api_key_required: bool
    integration_type: str | None
    function_arn: str | None
    cache_key_parameters: tuple[str, ...]
    timeout_ms: int


@dataclass(frozen=True)
class Route:
    resource_id: str
    path: str
    methods: Mapping[str, Method]

    def match(self, segments: list[str]) -> dict[str, str] | None:
        """Path parameters when ``segments`` fall under this resource's path, else None."""
        pattern = [p for p in self.path.split("/") if p]
        parameters: dict[str, str] = {}
        for index, part in enumerate(pattern):
            parameter = _PARAMETER.match(part)
            if parameter and parameter["greedy"]:
                if index != len(pattern) - 1 or index >= len(segments):
                    return None
                parameters[parameter["name"]] = "/".join(segments[index:])
                return parameters
            if index >= len(segments):
                return None
            if parameter:
                parameters[parameter["name"]] = segments[index]
            elif part != segments[index]:
                return None
        return parameters if len(pattern) == len(segments) else None

    @property
    def specificity(self) -> tuple[int, int]:
        """Literal segments first, then plain parameters before greedy ones."""
        parts = [p for p in self.path.split("/") if p]
        literal = sum(1 for p in parts if not _PARAMETER.match(p))
        greedy = any(p.endswith("+}") for p in parts)
        return literal, 0 if greedy else 1


@dataclass(frozen=True)
class Throttle:
    rate: float
    burst: int


@dataclass(frozen=True)
class ApiKey:
    id: str
    value: str
    enabled: bool


@dataclass(frozen=True)
class ApiConfig:
    api_id: str
    name: str
    account: str
    region: str
    routes: tuple[Route, ...]
    stages: Mapping[str, Mapping[str, Any]]
    binary_media_types: tuple[str, ...] = ()
    api_key_source: str = "HEADER"
    keys: Mapping[str, ApiKey] = field(default_factory=dict)
    # stage -> API key id -> the throttle of the usage plan that binds the key to the stage
    plan_keys: Mapping[str, Mapping[str, Throttle | None]] = field(default_factory=dict)

    def route(self, path: str) -> tuple[Route, dict[str, str]] | None:
        segments = [unquote(s) for s in path.split("/") if s]
        found = [(r, p) for r in self.routes if (p := r.match(segments)) is not None]
        if not found:
            return None
        return max(found, key=lambda pair: pair[0].specificity)


def _items(clients: ClientFactory, operation: str, **params: Any) -> Iterator[dict[str, Any]]:
    paginator = clients("apigateway").get_paginator(operation)
    for page in paginator.paginate(**params):
        yield from page.get("items", [])


def _throttle(settings: Mapping[str, Any] | None) -> Throttle | None:
    if not settings:
        return None
    rate, burst = settings.get("rateLimit"), settings.get("burstLimit")
    if rate is None or burst is None or float(rate) < 0 or int(burst) < 0:
        return None
    return Throttle(float(rate), int(burst))


def _function_arn(integration: Mapping[str, Any]) -> str | None:
    match = _LAMBDA_URI.search(str(integration.get("uri") or ""))
    return match["arn"] if match else None


def load_api_config(clients: ClientFactory, api_name: str) -> ApiConfig:
    """Everything :class:`LocalApi` needs about the REST API ``api_name``, read through boto3."""
    apigw = clients("apigateway")
    api = next((a for a in _items(clients, "get_rest_apis") if a.get("name") == api_name), None)
    if api is None:
        raise ApiNotFoundError(f"no REST API named {api_name!r} in the embedded AWS")
    api_id = api["id"]
    routes = []
    for resource in _items(clients, "get_resources", restApiId=api_id):
        methods = {}
        for http_method in resource.get("resourceMethods") or {}:
            found = apigw.get_method(
                restApiId=api_id, resourceId=resource["id"], httpMethod=http_method
            )
            integration = found.get("methodIntegration") or {}
            methods[http_method] = Method(
                http_method=http_method,
                authorization_type=found.get("authorizationType") or "NONE",
                api_key_required=bool(found.get("apiKeyRequired")),
                integration_type=integration.get("type"),
                function_arn=_function_arn(integration),
                cache_key_parameters=tuple(integration.get("cacheKeyParameters") or ()),
                timeout_ms=int(integration.get("timeoutInMillis") or 29_000),
            )
        routes.append(Route(resource["id"], resource["path"], methods))
    stages = {s["stageName"]: s for s in apigw.get_stages(restApiId=api_id).get("item", [])}
    keys = {
        k["value"]: ApiKey(k["id"], k["value"], bool(k.get("enabled")))
        for k in _items(clients, "get_api_keys", includeValues=True)
        if k.get("value")
    }
    plan_keys: dict[str, dict[str, Throttle | None]] = {}
    for plan in _items(clients, "get_usage_plans"):
        bound = [s["stage"] for s in plan.get("apiStages") or [] if s.get("apiId") == api_id]
        if not bound:
            continue
        key_ids = [k["id"] for k in _items(clients, "get_usage_plan_keys", usagePlanId=plan["id"])]
        for stage in bound:
            for key_id in key_ids:
                plan_keys.setdefault(stage, {})[key_id] = _throttle(plan.get("throttle"))
    account = clients("sts").get_caller_identity()["Account"]
    region = clients("apigateway").meta.region_name
    return ApiConfig(
        api_id=api_id,
        name=api_name,
        account=str(account),
        region=str(region),
        routes=tuple(routes),
        stages=stages,
        binary_media_types=tuple(api.get("binaryMediaTypes") or ()),
        api_key_source=api.get("apiKeySource") or "HEADER",
        keys=keys,
        plan_keys=plan_keys,
    )


def _method_settings(
    stage: Mapping[str, Any], path: str, http_method: str
) -> tuple[Mapping[str, Any] | None, Mapping[str, Any]]:
    """The method's own settings (if any) and the stage-wide ``*/*`` settings."""
    settings = stage.get("methodSettings") or {}
    trimmed = path.strip("/")
    for key in (
        f"{trimmed}/{http_method}",
        f"{path.replace('/', '~1')}/{http_method}",
        f"{trimmed.replace('/', '~1')}/{http_method}",
    ):
        if key in settings:
            return settings[key], settings.get("*/*") or {}
    return None, settings.get("*/*") or {}


def cache_ttl(stage: Mapping[str, Any], path: str, http_method: str) -> int:
    """Seconds to cache this method's responses on this stage (0: not cached)."""
    if not stage.get("cacheClusterEnabled"):
        return 0
    own, everything = _method_settings(stage, path, http_method)
    if own is not None:
        enabled, ttl = own.get("cachingEnabled"), own.get("cacheTtlInSeconds")
    else:  # stage-wide caching covers GET only
        enabled = http_method == "GET" and everything.get("cachingEnabled")
        ttl = everything.get("cacheTtlInSeconds")
    if not enabled:
        return 0
    return max(0, int(ttl if ttl is not None else DEFAULT_CACHE_TTL))


def method_throttle(stage: Mapping[str, Any], path: str, http_method: str) -> Throttle | None:
    own, everything = _method_settings(stage, path, http_method)
    settings = own if own is not None else everything
    return _throttle(
        {
            "rateLimit": settings.get("throttlingRateLimit"),
            "burstLimit": settings.get("throttlingBurstLimit"),
        }
    )


class TokenBucket:
    """A throttle's token bucket: ``rate`` tokens a second, at most ``burst``."""

    def __init__(self, throttle: Throttle, now: float) -> None:
        self.throttle = throttle
        self.tokens = float(throttle.burst)
        self.updated = now

    def take(self, now: float) -> bool:
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(float(self.throttle.burst), self.tokens + elapsed * self.throttle.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False
