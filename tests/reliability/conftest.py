"""Fixtures for the fault tests: botocore's retries without their real waits."""

from __future__ import annotations

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
