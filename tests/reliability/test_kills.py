"""Apply and destroy killed at many points, then run again: they converge, with no duplicate
and no orphan; two applies at once end with one pipeline."""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Callable

import boto3
import pytest

from mlpipe import resources
from mlpipe.core.context import Context
from mlpipe.core.executor import Report, execute
from mlpipe.core.plan import Plan, plan_apply, plan_destroy
from mlpipe.local.faults import Killed, Rule, injected
from mlpipe.ops.lock import LockHeld, locked_plan
from tests.reliability.test_creates import counts, one_of_each
from tests.resources.endpoint_support import FakeTime, fake_time

REGION = "us-east-1"


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch, ctx: Context) -> FakeTime:
    return fake_time(monkeypatch, ctx)


def killed_until_done(make_plan: Callable[[], Plan], seed: int, most: int = 40) -> int:
    """Run the plan, killed after a random number of writes, until a run finds nothing to
    do; the number of kills."""
    rng, kills = random.Random(seed), 0
    for _ in range(most):
        plan = make_plan()
        if not plan.changes:
            return kills
        kill = Rule("*", "kill", writes=True, after=rng.randint(0, 8))
        with injected(kill) as faults, contextlib.suppress(Killed):
            execute(plan)
        kills += faults.counts()["kill"]
    raise AssertionError(f"still changing after {most} runs")


def test_apply_killed_at_many_points_converges_with_one_of_each(
    ctx: Context, clock: FakeTime
) -> None:
    kills = killed_until_done(lambda: plan_apply(resources.build(ctx)), seed=13)
    assert kills >= 3
    print(f"apply converged after {kills} kills")
    assert counts(ctx) == one_of_each(ctx)
    ctx.aws.log.reset()
    execute(plan_apply(resources.build(ctx)))
    assert ctx.aws.log.writes() == []


def test_destroy_killed_at_many_points_leaves_only_what_it_retains(
    ctx: Context, clock: FakeTime
) -> None:
    report = execute(plan_apply(resources.build(ctx)))
    assert report.ok
    kills = killed_until_done(lambda: plan_destroy(resources.build(ctx)), seed=7)
    assert kills >= 3
    print(f"destroy converged after {kills} kills")
    names = ctx.names
    kms = boto3.client("kms", region_name=REGION)
    left = [
        arn
        for arn in ctx.tagged()
        if ":kms:" not in arn
        or kms.describe_key(KeyId=arn)["KeyMetadata"]["KeyState"] != "PendingDeletion"
    ]
    # The model bucket with the registry, the protected table, and the key encrypting both.
    retained = {
        f"arn:aws:s3:::{names.model_bucket}",
        f"arn:aws:dynamodb:{REGION}:{ctx.aws.account}:table/{names.predictions_table}",
        kms.describe_key(KeyId=names.kms_alias)["KeyMetadata"]["Arn"],
        *(
            f"arn:aws:ssm:{REGION}:{ctx.aws.account}:parameter{names.metadata_param(v)}"
            for v in ctx.spec.models.versions
        ),
    }
    assert set(left) == retained
    left_over = counts(ctx)
    assert left_over.pop("kms keys") == 1
    assert set(left_over.values()) == {0}


def test_two_applies_at_once_end_with_one_pipeline(ctx: Context, clock: FakeTime) -> None:
    start = threading.Barrier(2)
    reports: list[Report] = []
    refused: list[str] = []

    def apply() -> None:
        start.wait()
        try:
            with locked_plan(ctx, "apply", lambda: plan_apply(resources.build(ctx))) as plan:
                reports.append(execute(plan))
        except LockHeld as exc:
            refused.append(str(exc))

    threads = [threading.Thread(target=apply) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(reports) == 1 and reports[0].ok and len(refused) == 1
    assert "another operation holds the lock" in refused[0]
    assert counts(ctx) == one_of_each(ctx)

    ctx.aws.log.reset()
    with locked_plan(ctx, "apply", lambda: plan_apply(resources.build(ctx))) as plan:
        execute(plan)
    assert ctx.aws.log.writes() == []
