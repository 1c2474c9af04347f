"""Fixtures for the fault tests: botocore's retries without their real waits; the cyclic
collector run less often (the security and operations tests use it too)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.retries.adaptive import ClientRateLimiter
from botocore.retries.standard import ExponentialBackoff


@pytest.fixture(autouse=True)
def retries_without_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore still retries every fault; it only does not sleep between attempts."""
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0)

    def send(self: ClientRateLimiter, request: Any, **kwargs: Any) -> None:
        return None

    monkeypatch.setattr(ClientRateLimiter, "on_sending_request", send)


@pytest.fixture(scope="module", autouse=True)
def fewer_collections() -> Iterator[None]:
    """Python's cyclic collector starts a pass every 700 new objects, and every tenth pass of
    the middle generation walks all live objects; a moto account and its copies make hundreds
    of thousands, so those walks took about a third of these tests' time. A pass every 20,000
    new objects finds the same garbage in far fewer walks; the module's end restores the
    default."""
    before = gc.get_threshold()
    gc.set_threshold(20_000, *before[1:])
    yield
    gc.set_threshold(*before)
