"""API Gateway's Lambda proxy integration: the HTTP response a function's proxy response
makes (:func:`proxy_response`), and :class:`ApiResponse`, what the local API answers."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

__all__ = ["ApiResponse", "header", "multi", "proxy_response"]

PROXY_RESPONSE_KEYS = frozenset(
    {"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"}
)


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


def multi(pairs: list[tuple[str, str]]) -> tuple[dict[str, str] | None, dict[str, list[str]]]:
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in pairs:
        single[name] = value
        multi.setdefault(name, []).append(value)
    return (single or None), multi


def header(headers: list[tuple[str, str]], name: str) -> str | None:
    found = [v for k, v in headers if k.lower() == name.lower()]
    return found[-1] if found else None


def proxy_response(payload: Any, request_id: str) -> ApiResponse | None:
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
