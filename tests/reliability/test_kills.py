"""Apply and destroy killed at many points, then run again: they converge, with no duplicate
and no orphan; two applies at once end with one pipeline."""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass

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
from tests.support import Shared, build_once

REGION = "us-east-1"


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch, ctx: Context) -> FakeTime:
    return fake_time(monkeypatch, ctx)


@dataclass(frozen=True)
class Kills:
    """Where a run killed until done was killed: one call per kill."""

    calls: list[str]

    def services(self) -> set[str]:
        return {call.split(":", 1)[0] for call in self.calls}


def killed_until_done(
    make_plan: Callable[[], Plan], seed: int, gaps: tuple[int, int], most: int = 20
) -> Kills:
    """Run the plan, killed after a random number of writes (within ``gaps``), until a run
    finds nothing to do."""
    rng, calls = random.Random(seed), list[str]()
    for _ in range(most):
        plan = make_plan()
        if not plan.changes:
            return Kills(calls)
        kill = Rule("*", "kill", writes=True, after=rng.randint(*gaps))
        with injected(kill) as faults, contextlib.suppress(Killed):
            execute(plan)
        calls += [key.split(" ", 1)[1] for key in faults.injected]
    raise AssertionError(f"still changing after {most} runs")


@pytest.fixture(scope="module")
def killed_apply(tmp_path_factory: pytest.TempPathFactory) -> Shared[Kills]:
    """The whole pipeline applied from nothing, killed after 2 to 12 writes (the apply makes
    about 170), run again until a run finds nothing to do; built once for the module."""
    return build_once(
        tmp_path_factory.mktemp("killed-apply"),
        lambda ctx: killed_until_done(
            lambda: plan_apply(resources.build(ctx)), seed=13, gaps=(2, 12)
        ),
        fake_time,
    )


def test_apply_killed_at_many_points_converges_with_one_of_each(
    ctx: Context, clock: FakeTime, killed_apply: Shared[Kills]
) -> None:
    kills = killed_apply.restore()
    print(f"apply converged after kills at {kills.calls}")
    assert len(kills.calls) >= 3 and len(kills.services()) >= 3, kills.calls
    assert counts(ctx) == one_of_each(ctx)
    ctx.aws.log.reset()
    execute(plan_apply(resources.build(ctx)))
    assert ctx.aws.log.writes() == []


def test_destroy_killed_at_many_points_leaves_only_what_it_retains(
    ctx: Context, clock: FakeTime, killed_apply: Shared[Kills]
) -> None:
    killed_apply.restore()
    kills = killed_until_done(lambda: plan_destroy(resources.build(ctx)), seed=7, gaps=(3, 10))
    print(f"destroy converged after kills at {kills.calls}")
    assert len(kills.calls) >= 3 and len(kills.services()) >= 2, kills.calls
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
