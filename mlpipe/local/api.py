"""A REST API of the embedded AWS, served on localhost by the real Lambda code behind it.

moto keeps an API's configuration but cannot serve it over HTTP. :class:`LocalApi` reads that
configuration through boto3 (the API by name, its resources, methods and integrations, its
stages, the usage plans and API keys bound to them) and serves ``/<stage>/<path>`` as
``https://<api>.execute-api.<region>.amazonaws.com/<stage>/<path>`` is served: each request
becomes an API Gateway REST proxy event (format 1.0) for the integration's function, run by
:class:`~mlpipe.local.functions.LocalFunctions`, and the function's proxy response becomes the
HTTP response.

What API Gateway would do first is done here too, in its order:

* unknown stage, route or method: 403 ``Missing Authentication Token``;
* ``AWS_IAM`` methods: 403 ``Missing Authentication Token`` without an ``Authorization``
  header. The SigV4 signature is not verified locally: any signed request is let through;
* ``apiKeyRequired``: 403 ``Forbidden`` unless ``x-api-key`` is the value of an enabled key of
  a usage plan bound to this API stage;
* throttling: a token bucket per API key (its usage plan's rate and burst) and per method (the
  stage's method settings), 429 ``Too Many Requests`` when empty. Quotas are not counted;
* caching, when the stage has a cache cluster and the method's settings enable caching
  (``*/*`` enables it for GET only, as on AWS; other methods need their own method setting):
  integration responses of any status (API Gateway offers no setting to cache by status code:
  https://stackoverflow.com/questions/45883323, github.com/DianaIonita/
  serverless-api-gateway-caching/issues/125) are kept in
  memory for ``cacheTtlInSeconds``, keyed by the method and the values of the integration's
  ``cacheKeyParameters`` (a missing parameter is an empty part of the key). Hits and misses
  are counted on the server (``cache_hits``, ``cache_misses``), as CloudWatch's
  CacheHitCount/CacheMissCount.

Payload limits, as AWS applies them: a body over API Gateway's 10 MB is answered 413 ``Request
Too Long`` before anything else; a proxy event over Lambda's 6 MB synchronous invocation payload
(6,291,456 bytes, https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html) is
refused by Lambda before the function runs, answered 413 ``Request Entity Too Large``
(https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html). Neither is cached.

A function error or a malformed proxy response is answered 502 ``Internal server error``, an
integration slower than its ``timeoutInMillis`` 504 ``Endpoint request timed out``.

A stage serves the API's current routes (not a snapshot taken at its last deployment). The
configuration is read again at most every ``config_ttl`` seconds, so changes made while the
server runs (keys, stage settings) apply within that time.
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from mlpipe.local.functions import ClientFactory, FunctionNotFoundError, LocalFunctions
from mlpipe.local.metrics import MetricSink
from mlpipe.local.service import BackgroundHttpServer

__all__ = [
    "ApiConfig",
    "ApiNotFoundError",
    "ApiResponse",
    "LocalApi",
    "Method",
    "Route",
    "load_api_config",
]

log = logging.getLogger(__name__)

Clock = Callable[[], float]

MISSING_TOKEN = {"message": "Missing Authentication Token"}
FORBIDDEN = {"message": "Forbidden"}
TOO_MANY_REQUESTS = {"message": "Too Many Requests"}
INTERNAL_ERROR = {"message": "Internal server error"}
TIMED_OUT = {"message": "Endpoint request timed out"}
REQUEST_TOO_LONG = {"message": "Request Too Long"}
ENTITY_TOO_LARGE = {"message": "Request Entity Too Large"}

DEFAULT_CACHE_TTL = 300
MAX_CACHED_BYTES = 1_048_576  # API Gateway's largest cacheable response
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024  # API Gateway's REST API payload quota
MAX_INVOKE_BYTES = 6 * 1024 * 1024  # Lambda's synchronous invocation request payload
PROXY_RESPONSE_KEYS = frozenset(
    {"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"}
)
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


def _cache_ttl(stage: Mapping[str, Any], path: str, http_method: str) -> int:
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


def _method_throttle(stage: Mapping[str, Any], path: str, http_method: str) -> Throttle | None:
    own, everything = _method_settings(stage, path, http_method)
    settings = own if own is not None else everything
    return _throttle(
        {
            "rateLimit": settings.get("throttlingRateLimit"),
            "burstLimit": settings.get("throttlingBurstLimit"),
        }
    )


# --- requests and responses ------------------------------------------------------------------


@dataclass(frozen=True)
class ApiResponse:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @classmethod
    def json(cls, status: int, body: Mapping[str, Any], request_id: str) -> ApiResponse:
        headers = (("Content-Type", "application/json"), ("x-amzn-RequestId", request_id))
        return cls(status, headers, json.dumps(body).encode())

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def for_request(self, request_id: str) -> ApiResponse:
        """The same response, answering another request (a cache hit)."""
        headers = [(k, v) for k, v in self.headers if k.lower() != "x-amzn-requestid"]
        return replace(self, headers=(*headers, ("x-amzn-RequestId", request_id)))


class _TokenBucket:
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


def _multi(pairs: list[tuple[str, str]]) -> tuple[dict[str, str] | None, dict[str, list[str]]]:
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in pairs:
        single[name] = value
        multi.setdefault(name, []).append(value)
    return (single or None), multi


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    found = [v for k, v in headers if k.lower() == name.lower()]
    return found[-1] if found else None


def _proxy_response(payload: Any, request_id: str) -> ApiResponse | None:
    """The HTTP response of a Lambda proxy response, or None when it is malformed."""
    if not isinstance(payload, dict) or set(payload) - PROXY_RESPONSE_KEYS:
        return None
    status = payload.get("statusCode")
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        return None
    headers: list[tuple[str, str]] = []
    single, multi = payload.get("headers") or {}, payload.get("multiValueHeaders") or {}
    if not isinstance(single, dict) or not isinstance(multi, dict):
        return None
    for name, values in multi.items():
        if not isinstance(values, list):
            return None
        headers += [(str(name), str(v)) for v in values]
    listed = {name.lower() for name, _ in headers}
    headers += [(str(k), str(v)) for k, v in single.items() if k.lower() not in listed]
    body = payload.get("body")
    if body is None:
        raw = b""
    elif not isinstance(body, str):
        return None
    elif payload.get("isBase64Encoded"):
        try:
            raw = base64.b64decode(body, validate=True)
        except ValueError:
            return None
    else:
        raw = body.encode()
    if not any(k.lower() == "content-type" for k, _ in headers):
        headers.append(("Content-Type", "application/json"))
    headers.append(("x-amzn-RequestId", request_id))
    return ApiResponse(status, tuple(headers), raw)


# --- the server ------------------------------------------------------------------------------


class LocalApi(BackgroundHttpServer):
    """Serves the REST API ``api_name`` of the embedded AWS on ``http://host:port/<stage>/``."""

    thread_name = "mlpipe-local-api"

    def __init__(
        self,
        clients: ClientFactory,
        functions: LocalFunctions,
        api_name: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
        config_ttl: float = 5.0,
        metrics: MetricSink | None = None,
    ) -> None:
        super().__init__(host, port)
        self.clients = clients
        self.metrics = metrics
        self.functions = functions
        self.api_name = api_name
        self.clock = clock
        self.wall = wall
        self.config_ttl = config_ttl
        self.cache_hits = 0
        self.cache_misses = 0
        self._config: ApiConfig | None = None
        self._config_read_at = 0.0
        self._cache: dict[tuple[Any, ...], tuple[float, ApiResponse]] = {}
        self._buckets: dict[tuple[Any, ...], _TokenBucket] = {}
        self._lock = threading.Lock()

    # lifecycle

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _RequestHandler

    def stage_url(self, stage: str) -> str:
        return f"{self.url}/{stage}"

    # configuration

    def refresh(self) -> ApiConfig:
        """Read the API's configuration from the embedded AWS now."""
        config = load_api_config(self.clients, self.api_name)
        with self._lock:
            self._config, self._config_read_at = config, self.clock()
        return config

    def config(self) -> ApiConfig:
        with self._lock:
            config, read_at = self._config, self._config_read_at
        if config is not None and self.clock() - read_at < self.config_ttl:
            return config
        try:
            return self.refresh()
        except Exception:
            if config is None:
                raise
            log.warning("could not re-read API %s; serving the last configuration", exc_info=True)
            return config

    # requests

    def handle(
        self,
        http_method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes,
        source_ip: str = "127.0.0.1",
    ) -> ApiResponse:
        """Answer one request as API Gateway would (``target`` is ``/<stage>/<path>?query``)."""
        request_id = str(uuid.uuid4())
        started = self.clock()
        try:
            response = self._handle(
                http_method.upper(), target, headers, body, source_ip, request_id
            )
        except ApiNotFoundError:
            # As API Gateway answers for an API id that does not exist (not deployed yet).
            return ApiResponse.json(403, MISSING_TOKEN, request_id)
        except Exception:
            log.exception("local API failed on %s %s", http_method, target)
            response = ApiResponse.json(500, INTERNAL_ERROR, request_id)
        stage = unquote(urlsplit(target).path.lstrip("/").partition("/")[0])
        if self._config is not None and stage in self._config.stages:
            self._put(stage, "Count", 1, "Count")
            self._put(stage, "Latency", (self.clock() - started) * 1000, "Milliseconds")
            self._put(stage, "4XXError", int(400 <= response.status < 500), "Count")
            self._put(stage, "5XXError", int(response.status >= 500), "Count")
        return response

    def _put(self, stage: str, name: str, value: float, unit: str) -> None:
        """One of API Gateway's metrics, per ApiName + Stage."""
        if self.metrics is not None:
            dims = {"ApiName": self.api_name, "Stage": stage}
            self.metrics.put("AWS/ApiGateway", name, value, unit, dims)

    def _handle(
        self,
        http_method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes,
        source_ip: str,
        request_id: str,
    ) -> ApiResponse:
        if len(body) > MAX_PAYLOAD_BYTES:
            return ApiResponse.json(413, REQUEST_TOO_LONG, request_id)
        config = self.config()
        url = urlsplit(target)
        stage_name, _, rest = url.path.lstrip("/").partition("/")
        stage = config.stages.get(unquote(stage_name))
        path = "/" + rest
        routed = config.route(path) if stage is not None else None
        method = None
        if routed is not None:
            methods = routed[0].methods
            method = methods.get(http_method) or methods.get("ANY")
        if stage is None or routed is None or method is None:
            return ApiResponse.json(403, MISSING_TOKEN, request_id)
        route, path_parameters = routed
        stage_name = unquote(stage_name)

        if method.authorization_type == "AWS_IAM" and not _header(headers, "Authorization"):
            return ApiResponse.json(403, MISSING_TOKEN, request_id)
        if method.authorization_type not in ("NONE", "AWS_IAM"):
            log.warning("authorization %s is not supported locally", method.authorization_type)
            return ApiResponse.json(500, INTERNAL_ERROR, request_id)

        key: ApiKey | None = None
        api_key = _header(headers, "x-api-key")
        if api_key is not None:
            key = config.keys.get(api_key)
        bound = config.plan_keys.get(stage_name, {})
        if method.api_key_required and (key is None or not key.enabled or key.id not in bound):
            return ApiResponse.json(403, FORBIDDEN, request_id)

        now = self.clock()
        limits = [
            (
                ("method", stage_name, route.path, method.http_method),
                _method_throttle(stage, route.path, method.http_method),
            )
        ]
        if method.api_key_required and key is not None:
            limits.append((("key", stage_name, key.id), bound.get(key.id)))
        if not self._admit(limits, now):
            return ApiResponse.json(429, TOO_MANY_REQUESTS, request_id)

        query = parse_qsl(url.query, keep_blank_values=True)
        ttl = _cache_ttl(stage, route.path, method.http_method)
        cache_key = None
        if ttl > 0:
            values = {
                "header": {k.lower(): v for k, v in headers},
                "querystring": dict(query),
                "path": path_parameters,
            }
            parts = []
            for parameter in method.cache_key_parameters:
                _, _, rest_of = parameter.partition("method.request.")
                source, _, name = rest_of.partition(".")
                lookup = name.lower() if source == "header" else name
                parts.append((parameter, values.get(source, {}).get(lookup)))
            cache_key = (stage_name, route.path, method.http_method, tuple(parts))
            cached = self._cached(cache_key, now)
            self._put(stage_name, "CacheHitCount", int(cached is not None), "Count")
            self._put(stage_name, "CacheMissCount", int(cached is None), "Count")
            if cached is not None:
                return cached.for_request(request_id)

        event = self._event(
            config,
            stage_name,
            route,
            method,
            path,
            path_parameters,
            headers,
            query,
            body,
            source_ip,
            request_id,
            key,
        )
        if len(json.dumps(event).encode()) > MAX_INVOKE_BYTES:
            return ApiResponse.json(413, ENTITY_TOO_LARGE, request_id)
        started = self.clock()
        response = self._integrate(method, event, request_id)
        self._put(stage_name, "IntegrationLatency", (self.clock() - started) * 1000, "Milliseconds")
        if (self.clock() - started) * 1000 > method.timeout_ms:
            return ApiResponse.json(504, TIMED_OUT, request_id)
        if response is None:
            return ApiResponse.json(502, INTERNAL_ERROR, request_id)
        if cache_key is not None and len(response.body) <= MAX_CACHED_BYTES:
            with self._lock:
                self._cache[cache_key] = (now + ttl, response)
        return response

    def _admit(self, limits: list[tuple[tuple[Any, ...], Throttle | None]], now: float) -> bool:
        with self._lock:
            for bucket_key, throttle in limits:
                if throttle is None:
                    continue
                bucket = self._buckets.get(bucket_key)
                if bucket is None or bucket.throttle != throttle:
                    bucket = self._buckets[bucket_key] = _TokenBucket(throttle, now)
                if not bucket.take(now):
                    return False
        return True

    def _cached(self, cache_key: tuple[Any, ...], now: float) -> ApiResponse | None:
        with self._lock:
            entry = self._cache.get(cache_key)
            if entry is not None and entry[0] > now:
                self.cache_hits += 1
                return entry[1]
            self._cache.pop(cache_key, None)
            self.cache_misses += 1
            return None

    def _integrate(
        self, method: Method, event: dict[str, Any], request_id: str
    ) -> ApiResponse | None:
        """The function's response; None when API Gateway would answer 502 itself."""
        if method.integration_type != "AWS_PROXY" or method.function_arn is None:
            log.warning("integration %s is not supported locally", method.integration_type)
            return None
        try:
            outcome = self.functions.invoke(method.function_arn, event)
        except FunctionNotFoundError as exc:
            log.warning("%s", exc)
            return None
        if not outcome.ok:
            return None
        response = _proxy_response(outcome.payload, request_id)
        if response is None:
            log.warning("malformed Lambda proxy response from %s", outcome.function_name)
        return response

    def _event(
        self,
        config: ApiConfig,
        stage: str,
        route: Route,
        method: Method,
        path: str,
        path_parameters: dict[str, str],
        headers: list[tuple[str, str]],
        query: list[tuple[str, str]],
        body: bytes,
        source_ip: str,
        request_id: str,
        key: ApiKey | None,
    ) -> dict[str, Any]:
        single_headers, multi_headers = _multi(headers)
        single_query, multi_query = _multi(query)
        content_type = (_header(headers, "Content-Type") or "").split(";")[0].strip()
        binary = any(fnmatch.fnmatch(content_type, t) for t in config.binary_media_types)
        text: str | None = None
        if body and not binary:
            with contextlib.suppress(UnicodeDecodeError):
                text = body.decode("utf-8")
        encoded = bool(body) and text is None
        now = self.wall()
        stamp = datetime.fromtimestamp(now, UTC)
        return {
            "resource": route.path,
            "path": path,
            "httpMethod": method.http_method if method.http_method != "ANY" else "ANY",
            "headers": single_headers,
            "multiValueHeaders": multi_headers or None,
            "queryStringParameters": single_query,
            "multiValueQueryStringParameters": multi_query or None,
            "pathParameters": path_parameters or None,
            "stageVariables": dict(config.stages[stage].get("variables") or {}) or None,
            "requestContext": {
                "resourceId": route.resource_id,
                "resourcePath": route.path,
                "httpMethod": method.http_method,
                "extendedRequestId": request_id,
                "requestTime": stamp.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "path": f"/{stage}{path}",
                "accountId": config.account,
                "protocol": "HTTP/1.1",
                "stage": stage,
                "domainPrefix": config.api_id,
                "requestTimeEpoch": int(now * 1000),
                "requestId": request_id,
                "identity": {
                    "cognitoIdentityPoolId": None,
                    "accountId": None,
                    "cognitoIdentityId": None,
                    "caller": None,
                    "sourceIp": source_ip,
                    "principalOrgId": None,
                    "accessKey": None,
                    "cognitoAuthenticationType": None,
                    "cognitoAuthenticationProvider": None,
                    "userArn": None,
                    "userAgent": _header(headers, "User-Agent"),
                    "user": None,
                    "apiKey": key.value if key is not None else None,
                    "apiKeyId": key.id if key is not None else None,
                },
                "domainName": f"{self.host}:{self.port}" if self.running else self.host,
                "apiId": config.api_id,
            },
            "body": base64.b64encode(body).decode() if encoded else text,
            "isBase64Encoded": encoded,
        }


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        response = self.server.owner.handle(  # type: ignore[attr-defined]
            self.command, self.path, list(self.headers.items()), body, self.client_address[0]
        )
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)
