"""Constants and a controllable clock shared by the embedded AWS tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

REGION = "us-east-1"
ACCOUNT = "123456789012"
TRANSITION_SECONDS = 1.0
EPOCH = datetime(2030, 1, 1, tzinfo=UTC)


class FakeClock:
    """Seconds that pass only when told to; also the time moto stamps on endpoints."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def utc(self) -> datetime:
        return EPOCH + timedelta(seconds=self.now)
