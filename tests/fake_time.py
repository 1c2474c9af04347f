"""Time that passes only when mlpipe waits: the clock of every test's run context."""

from __future__ import annotations

from collections.abc import Callable

from mlpipe.core.wait import Clock


class FakeTime:
    """Seconds that pass only when mlpipe sleeps; shared by moto's endpoints and mlpipe's waits."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.on_sleep: list[Callable[[], None]] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        for hook in self.on_sleep:
            hook()

    def clock(self) -> Clock:
        return Clock(now=self, sleep=self.sleep)
