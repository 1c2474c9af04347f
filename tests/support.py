"""Test helpers shared by the resource tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from mlpipe.core.context import Context
from mlpipe.core.executor import Report, execute
from mlpipe.core.plan import Action, plan_apply
from mlpipe.core.resource import Resource
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


def four_step(ctx: Context, resources: Sequence[Resource]) -> Report:
    """The idempotency check: plan → create; apply; plan → no changes; apply → zero writes.

    Writes are counted from the API calls really sent (a botocore event hook), not from the plan.
    """
    first = plan_apply(resources)
    assert {s.action for s in first.steps} == {Action.CREATE}, [
        (s.key, s.action) for s in first.steps
    ]
    report = execute(first)
    failed = {k: o.error for k, o in report.outcomes.items() if o.error}
    assert report.ok, failed

    ctx.aws.log.reset()
    second = plan_apply(resources)
    drift = {s.key: s.diff.paths() for s in second.changes}
    assert not drift, drift
    assert ctx.aws.log.writes() == [], "plan must only read"
    again = execute(second)
    assert again.ok
    assert ctx.aws.log.writes() == [], "a converged apply must make no write call"
    return report


def converge(resources: Sequence[Resource]) -> Report:
    report = execute(plan_apply(resources))
    assert report.ok, {k: o.error for k, o in report.outcomes.items() if o.error}
    return report
