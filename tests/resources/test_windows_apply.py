"""The first apply with the embedded AWS's consistency windows on (role 2 s, backups 1 s,
endpoint config 0.5 s, model data 1 s, API Gateway 0.5 s, network interfaces 2 s): every refusal
is a named transient error mlpipe waits out."""

from __future__ import annotations

import pytest

from mlpipe.core.context import Context
from mlpipe.core.executor import execute
from mlpipe.core.plan import plan_apply, plan_destroy
from mlpipe.local.moto_ext import windows as ext_windows
from mlpipe.resources import sagemaker
from tests.resources.endpoint_support import FakeTime, fake_time
from tests.resources.serving import everything


@pytest.fixture
def windows(monkeypatch: pytest.MonkeyPatch, ctx: Context) -> None:
    """The windows on, timed by the run's clock: they pass as mlpipe waits, in fake seconds."""
    monkeypatch.setattr(ext_windows, "clock", ctx.clock.now)
    for name, seconds in (
        ("ROLE", "2"),
        ("BACKUPS", "1"),
        ("ENDPOINT_CONFIG", "0.5"),
        ("MODEL_DATA", "1"),
        ("APIGATEWAY", "0.5"),
        ("ENI_RELEASE", "2"),
    ):
        monkeypatch.setenv(f"MLPIPE_LOCAL_{name}_WINDOW", seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch, ctx: Context) -> FakeTime:
    return fake_time(monkeypatch, ctx)


def test_the_first_apply_waits_out_every_window_and_destroy_leaves_nothing(
    ctx: Context, windows: None, clock: FakeTime
) -> None:
    ctx.consistency_timeout = 60
    resources = [*everything(ctx), *sagemaker.resources(ctx)]
    report = execute(plan_apply(resources))
    assert report.ok, {k: o.error for k, o in report.outcomes.items() if o.error}
    calls = ctx.aws.log.summary()
    # Refused while a window lasted, then made: more attempts than resources. Which calls
    # meet an open window depends on how far the other threads' waits have moved the shared
    # clock by then; each window's refusal is pinned down in tests/local/test_ext_*.py.
    made = {
        "lambda:CreateFunction": 2,
        "sagemaker:CreateModel": 2,
        "dynamodb:UpdateContinuousBackups": 1,
        "sagemaker:CreateEndpoint": 1,
        "apigateway:CreateDeployment": 1,
    }
    assert all(calls[call] >= count for call, count in made.items()), calls
    assert sum(calls[call] for call in made) > sum(made.values())
    ctx.aws.log.reset()
    again = plan_apply(resources)
    assert not again.changes
    execute(again)
    assert ctx.aws.log.writes() == []

    report = execute(plan_destroy(resources, force=True))
    assert report.ok, {k: o.error for k, o in report.outcomes.items() if o.error}
    kms = ctx.aws.client("kms")
    left = [
        arn
        for arn in ctx.tagged()
        if ":key/" not in arn
        or kms.describe_key(KeyId=arn)["KeyMetadata"]["KeyState"] != "PendingDeletion"
    ]
    assert left == []
    ec2 = ctx.aws.client("ec2")
    assert ec2.describe_network_interfaces()["NetworkInterfaces"] == []
    assert "ec2:DeleteNetworkInterface" not in ctx.aws.log.calls  # Lambda released them
