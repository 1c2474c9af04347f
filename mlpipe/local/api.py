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
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from mlpipe.local.api_config import (
    ApiConfig,
    ApiKey,
    ApiNotFoundError,
    Method,
    Route,
    Throttle,
    TokenBucket,
    cache_ttl,
    load_api_config,
    method_throttle,
)
from mlpipe.local.api_proxy import ApiResponse, header, multi, proxy_response
from mlpipe.local.functions import ClientFactory, FunctionNotFoundError, LocalFunctions
from mlpipe.local.metrics import MetricSink
from mlpipe.local.service import BackgroundHttpServer

__all__ = ["LocalApi"]

log = logging.getLogger(__name__)

Clock = Callable[[], float]

MISSING_TOKEN = {"message": "Missing Authentication Token"}
FORBIDDEN = {"message": "Forbidden"}
TOO_MANY_REQUESTS = {"message": "Too Many Requests"}
INTERNAL_ERROR = {"message": "Internal server error"}
TIMED_OUT = {"message": "Endpoint request timed out"}
REQUEST_TOO_LONG = {"message": "Request Too Long"}
ENTITY_TOO_LARGE = {"message": "Request Entity Too Large"}

MAX_CACHED_BYTES = 1_048_576  # API Gateway's largest cacheable response
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024  # API Gateway's REST API payload quota
MAX_INVOKE_BYTES = 6 * 1024 * 1024  # Lambda's synchronous invocation request payload


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
        self._buckets: dict[tuple[Any, ...], TokenBucket] = {}
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

        if method.authorization_type == "AWS_IAM" and not header(headers, "Authorization"):
            return ApiResponse.json(403, MISSING_TOKEN, request_id)
        if method.authorization_type not in ("NONE", "AWS_IAM"):
            log.warning("authorization %s is not supported locally", method.authorization_type)
            return ApiResponse.json(500, INTERNAL_ERROR, request_id)

        key: ApiKey | None = None
        api_key = header(headers, "x-api-key")
        if api_key is not None:
            key = config.keys.get(api_key)
        bound = config.plan_keys.get(stage_name, {})
        if method.api_key_required and (key is None or not key.enabled or key.id not in bound):
            return ApiResponse.json(403, FORBIDDEN, request_id)

        now = self.clock()
        limits = [
            (
                ("method", stage_name, route.path, method.http_method),
                method_throttle(stage, route.path, method.http_method),
            )
        ]
        if method.api_key_required and key is not None:
            limits.append((("key", stage_name, key.id), bound.get(key.id)))
        if not self._admit(limits, now):
            return ApiResponse.json(429, TOO_MANY_REQUESTS, request_id)

        query = parse_qsl(url.query, keep_blank_values=True)
        ttl = cache_ttl(stage, route.path, method.http_method)
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
                    bucket = self._buckets[bucket_key] = TokenBucket(throttle, now)
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
        response = proxy_response(outcome.payload, request_id)
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
        single_headers, multi_headers = multi(headers)
        single_query, multi_query = multi(query)
        content_type = (header(headers, "Content-Type") or "").split(";")[0].strip()
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
                    "userAgent": header(headers, "User-Agent"),
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
