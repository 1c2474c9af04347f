"""Faults for the embedded AWS: errors, throttling, lost responses, refusals and delays.

A fault plan is a seed and a list of rules. A rule names the calls it applies to
(``service:Operation`` with shell-style wildcards, e.g. ``ec2:CreateVpc``, ``kms:Create*``,
``*``; the service is the request's signing name), what happens to them, and how often:

- ``error``: a 500 InternalError before the call reaches AWS (botocore retries it);
- ``throttle``: a 400 ThrottlingException (``RequestLimitExceeded`` on EC2) before the call;
- ``lose``: the call reaches AWS and takes effect, then its answer is lost: the client sees a
  connection reset (in-process) or a 500 (over HTTP), and botocore retries the call;
- ``refuse``: an error of the rule's ``code``/``status``/``message`` before the call, which
  botocore does not retry;
- ``delay``: the call waits ``seconds`` before it runs;
- ``kill``: the call takes effect, then the caller dies: :class:`Killed` (a ``BaseException``,
  so no ``except Exception`` stops it) is raised in the caller's thread; over HTTP, where the
  caller is another process, the answer is lost instead.

``writes`` limits a rule to calls that can change something (not Describe/Get/List...).
``times`` bounds how many calls a rule hits (``None``: every one), ``after`` lets that many
matching calls through first, and ``rate`` is the probability of a hit, drawn from the plan's
seeded generator, so a plan replays the same faults for the same calls.

The layer works under ``mock_aws`` (moto's botocore stubber) and in moto's server (its WSGI
app). It is configured in-process with :func:`activate` / :func:`injected`, for a server from
``MLPIPE_FAULTS`` (a JSON plan) at start, or over HTTP: ``POST /mlpipe-api/faults`` with a plan,
``GET`` for the counts, ``DELETE`` to clear. Every fault injected is counted by kind and call.
"""

from __future__ import annotations

import fnmatch
import io
import json
import os
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

import botocore.session
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ConnectionClosedError
from moto.core.botocore_stubber import BotocoreStubber, MockRawResponse
from moto.moto_server.werkzeug_app import DomainDispatcherApplication

from mlpipe.core.clients import is_write

KINDS = ("error", "throttle", "lose", "refuse", "delay", "kill")
ADMIN_PATH = "/mlpipe-api/faults"
ENV = "MLPIPE_FAULTS"


@dataclass
class Rule:
    match: str
    kind: str
    times: int | None = 1
    after: int = 0
    rate: float = 1.0
    code: str = "AccessDeniedException"
    message: str = "refused by the fault plan"
    status: int = 400
    seconds: float = 0.0
    writes: bool = False
    seen: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"fault kind {self.kind!r} is not one of {', '.join(KINDS)}")

    def applies(self, call: str) -> bool:
        if self.writes and not is_write(call.split(":", 1)[-1]):
            return False
        return fnmatch.fnmatchcase(call, self.match)


class Killed(BaseException):
    """The caller died right after its call took effect (a `kill` fault)."""


@dataclass
class Faults:
    """A fault plan and what it did; thread-safe, deterministic for a seed."""

    rules: list[Rule] = field(default_factory=list)
    seed: int = 0
    sleep: Callable[[float], None] = time.sleep
    injected: Counter[str] = field(default_factory=Counter)
    _random: random.Random = field(init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    @classmethod
    def from_plan(cls, plan: Mapping[str, Any]) -> Faults:
        rules = [Rule(**{k: v for k, v in r.items() if k != "seen"}) for r in plan["rules"]]
        return cls(rules, int(plan.get("seed", 0)))

    def decide(self, call: str) -> Rule | None:
        """The rule that hits this call, if any; counted as injected."""
        with self._lock:
            for rule in self.rules:
                if not rule.applies(call) or rule.times == 0:
                    continue
                rule.seen += 1
                if rule.seen <= rule.after:
                    continue
                if rule.rate < 1.0 and self._random.random() >= rule.rate:
                    continue
                if rule.times is not None:
                    rule.times -= 1
                self.injected[f"{rule.kind} {call}"] += 1
                return rule
        return None

    def counts(self) -> dict[str, int]:
        """Faults injected per kind, and in total."""
        with self._lock:
            by_kind = Counter({kind: 0 for kind in KINDS})
            for key, count in self.injected.items():
                by_kind[key.split(" ", 1)[0]] += count
            return {**by_kind, "total": sum(by_kind.values())}

    def as_json(self) -> dict[str, Any]:
        with self._lock:
            return {
                "seed": self.seed,
                "rules": [asdict(r) for r in self.rules],
                "injected": dict(self.injected),
            }


_active: Faults | None = None


def activate(faults: Faults) -> Faults:
    global _active
    _active = faults
    return faults


def deactivate() -> Faults | None:
    global _active
    previous, _active = _active, None
    return previous


def active() -> Faults | None:
    return _active


@contextmanager
def injected(
    *rules: Rule, seed: int = 0, sleep: Callable[[float], None] = time.sleep
) -> Iterator[Faults]:
    """Inject `rules` into every call to the embedded AWS for the duration of the block."""
    faults = activate(Faults(list(rules), seed, sleep))
    try:
        yield faults
    finally:
        deactivate()


# --- naming a request -----------------------------------------------------------------------

_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")


def _header(headers: Mapping[str, Any], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value.decode() if isinstance(value, bytes) else str(value)
    return ""


def service_of(headers: Mapping[str, Any]) -> str:
    """The service a signed request is for (its SigV4 signing name)."""
    found = _SCOPE.search(_header(headers, "Authorization"))
    return found.group(1) if found else "unknown"


@cache
def _rest_routes(service: str) -> list[tuple[str, re.Pattern[str], int, str]]:
    """(method, path pattern, literal length, operation) of a REST service's operations."""
    session = botocore.session.get_session()
    try:
        model = session.get_service_model(service)
    except Exception:
        return []
    routes = []
    for name in model.operation_names:
        http = model.operation_model(name).http
        uri = http.get("requestUri", "/").split("?", 1)[0]
        literal = re.sub(r"\{[^}]+\}", "", uri)
        pattern = re.sub(r"\\\{[^}]+?\\\+\\\}", ".+", re.escape(uri))
        pattern = re.sub(r"\\\{[^}]+?\\\}", "[^/]+", pattern)
        routes.append((http.get("method", "POST"), re.compile(pattern + "/?$"), len(literal), name))
    return sorted(routes, key=lambda r: -r[2])


def operation_of(
    service: str, method: str, path: str, headers: Mapping[str, Any], body: bytes
) -> str:
    """The API operation of a request: from its target header, Action, or REST route."""
    target = _header(headers, "X-Amz-Target")
    if target:
        return target.rsplit(".", 1)[-1]
    query = parse_qs(path.split("?", 1)[1]) if "?" in path else {}
    if "Action" not in query and _header(headers, "Content-Type").startswith(
        "application/x-www-form-urlencoded"
    ):
        query = parse_qs(body.decode(errors="replace"))
    if "Action" in query:
        return query["Action"][0]
    bare = path.split("?", 1)[0]
    for verb, pattern, _, name in _rest_routes(service):
        if verb == method and pattern.match(bare):
            return name
    return f"{method} {bare}"


# --- answers ----------------------------------------------------------------------------------


def error_response(
    service: str, headers: Mapping[str, Any], code: str, message: str, status: int
) -> tuple[int, dict[str, str], bytes]:
    """An error in the protocol of the request's service, as AWS would send it."""
    text = escape(message)
    if _header(headers, "X-Amz-Target"):
        body = json.dumps({"__type": code, "message": message}).encode()
        return status, {"Content-Type": "application/x-amz-json-1.1"}, body
    if service == "ec2":
        xml = (
            f"<Response><Errors><Error><Code>{code}</Code><Message>{text}</Message></Error>"
            "</Errors><RequestID>fault</RequestID></Response>"
        )
    elif _header(headers, "Content-Type").startswith("application/x-www-form-urlencoded"):
        xml = (
            f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>"
            f"<Message>{text}</Message></Error><RequestId>fault</RequestId></ErrorResponse>"
        )
    elif service == "s3":
        xml = f"<Error><Code>{code}</Code><Message>{text}</Message></Error>"
    else:
        body = json.dumps({"message": message}).encode()
        return status, {"Content-Type": "application/json", "x-amzn-ErrorType": code}, body
    return status, {"Content-Type": "text/xml"}, xml.encode()


def _refusal(rule: Rule, service: str) -> tuple[str, str, int]:
    """(code, message, status) a rule answers before the call, or ("", "", 0) to go on."""
    if rule.kind == "error":
        return "InternalError", "We encountered an internal error. Please try again.", 500
    if rule.kind == "throttle":
        code = "RequestLimitExceeded" if service == "ec2" else "ThrottlingException"
        return code, "Rate exceeded", 503 if service == "ec2" else 400
    if rule.kind == "refuse":
        return rule.code, rule.message, rule.status
    return "", "", 0


LOST = ("InternalError", "The response was lost on its way back (injected)", 500)


# --- under mock_aws: moto's botocore stubber --------------------------------------------------


def _stubbed(original: Callable[..., Any]) -> Callable[..., Any]:
    def call(self: BotocoreStubber, event_name: str, request: Any, **kwargs: Any) -> Any:
        faults = _active
        if faults is None or not self.enabled:
            return original(self, event_name, request, **kwargs)
        service = service_of(request.headers)
        call_name = f"{service}:{event_name.rsplit('.', 1)[-1]}"
        rule = faults.decide(call_name)
        if rule is None:
            return original(self, event_name, request, **kwargs)
        if rule.kind == "delay":
            faults.sleep(rule.seconds)
            return original(self, event_name, request, **kwargs)
        if rule.kind in ("lose", "kill"):
            answer = original(self, event_name, request, **kwargs)
            if answer is None:  # not a call moto serves: nothing to lose
                return None
            if rule.kind == "kill":
                raise Killed(call_name)
            raise ConnectionClosedError(endpoint_url=request.url)
        status, headers, body = error_response(service, request.headers, *_refusal(rule, service))
        return AWSResponse(request.url, status, headers, MockRawResponse(body))

    return call


# --- in moto's server: its WSGI app -----------------------------------------------------------

Wsgi = Callable[..., Iterable[bytes]]


def _reply(
    start_response: Callable[..., Any], status: int, headers: dict[str, str], body: bytes
) -> list[bytes]:
    reasons = {200: "OK", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error"}
    start_response(
        f"{status} {reasons.get(status, 'Error')}",
        [*headers.items(), ("Content-Length", str(len(body)))],
    )
    return [body]


def _admin(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    method = environ["REQUEST_METHOD"]
    if method == "POST":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        plan = json.loads(environ["wsgi.input"].read(length) or b"{}")
        activate(Faults.from_plan(plan))
    elif method == "DELETE":
        deactivate()
    faults = _active
    answer = {"counts": faults.counts(), **faults.as_json()} if faults else {"rules": []}
    return _reply(
        start_response, 200, {"Content-Type": "application/json"}, json.dumps(answer).encode()
    )


def _served(original: Wsgi) -> Wsgi:
    def call(
        self: DomainDispatcherApplication, environ: dict[str, Any], start_response: Any
    ) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == ADMIN_PATH:
            return _admin(environ, start_response)
        faults = _active
        if faults is None:
            return original(self, environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        headers = {k[5:].replace("_", "-"): v for k, v in environ.items() if k.startswith("HTTP_")}
        headers["Content-Type"] = environ.get("CONTENT_TYPE", "")
        service = service_of(headers)
        path = environ.get("PATH_INFO", "/")
        if environ.get("QUERY_STRING"):
            path += "?" + environ["QUERY_STRING"]
        operation = operation_of(service, environ["REQUEST_METHOD"], path, headers, body)
        rule = faults.decide(f"{service}:{operation}")
        if rule is None:
            return original(self, environ, start_response)
        if rule.kind == "delay":
            faults.sleep(rule.seconds)
            return original(self, environ, start_response)
        if rule.kind in ("lose", "kill"):
            answer = original(self, environ, lambda *_a, **_k: lambda _data: None)
            try:
                b"".join(answer)
            finally:
                getattr(answer, "close", lambda: None)()
            refusal = LOST
        else:
            refusal = _refusal(rule, service)
        return _reply(start_response, *error_response(service, headers, *refusal))

    return call


def install() -> None:
    """Put the layer in front of moto (inactive until a plan is given); `wrap` records undo.
    A plan in ``MLPIPE_FAULTS`` is activated at once (for a server started with it)."""
    from mlpipe.local.moto_ext import _wrap as wrap

    wrap(BotocoreStubber, "__call__", _stubbed)
    wrap(DomainDispatcherApplication, "__call__", _served)
    plan = os.environ.get(ENV)
    if plan:
        activate(Faults.from_plan(json.loads(plan)))
