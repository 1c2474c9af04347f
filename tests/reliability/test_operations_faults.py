"""Model operations under faults: refused, killed and lost calls leave the state, the active
version and the endpoint agreeing."""

from __future__ import annotations

import json

import pytest

from mlpipe.core.context import Context
from mlpipe.core.errors import MlpipeError
from mlpipe.core.executor import Report
from mlpipe.local.faults import Killed, Rule, injected
from mlpipe.ops import deployments, history, registry
from mlpipe.ops.deployments import Runner
from mlpipe.resources import monitoring
from tests.ops.test_operations import live, model_dir, ssm_value
from tests.resources.endpoint_support import FakeTime, fake_time, resources
from tests.support import Shared, build_once, converge


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch, ctx: Context) -> FakeTime:
    return fake_time(monkeypatch, ctx)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Shared[Report]:
    """The serving resources and the alarms applied (v1.0.0 and v2.0.0 registered by the
    apply), then v3.0.0 registered: built once for the module."""

    def build(ctx: Context) -> Report:
        report = converge([*resources(ctx), *monitoring.resources(ctx)])
        registry.register(ctx, "v3.0.0", model_dir(tmp_path_factory.mktemp("v3"), "v3.0.0"))
        return report

    return build_once(tmp_path_factory.mktemp("built"), build, fake_time)


@pytest.fixture
def runner(ctx: Context, clock: FakeTime, built: Shared[Report]) -> Runner:
    built.restore()  # a copy of the account the module's build left
    return Runner(ctx)


def state(ctx: Context) -> dict[str, tuple[str, int]]:
    value = json.loads(ssm_value(ctx.names.deployment_param))
    return {v["name"]: (v["version"], v["weight"]) for v in value["variants"]}


def agree(ctx: Context) -> dict[str, tuple[str, int]]:
    """The state, checked against what the endpoint serves."""
    served = {
        name: (version, round(weight * 100))
        for name, (weight, model) in live(ctx).items()
        for version in ("v1.0.0", "v2.0.0", "v3.0.0")
        if ctx.names.model(version) == model
    }
    assert served == state(ctx)
    return served


BEFORE = {"ModelA": ("v1.0.0", 80), "ModelB": ("v2.0.0", 20)}


def test_a_refused_promote_leaves_everything_as_served_before(runner: Runner) -> None:
    ctx = runner.ctx
    refused = Rule("sagemaker:CreateEndpointConfig", "refuse", code="ValidationException")
    with injected(refused) as faults, pytest.raises(MlpipeError, match="ValidationException"):
        deployments.promote(runner, "v3.0.0")
    assert faults.counts()["refuse"] == 1
    assert agree(ctx) == BEFORE
    assert ssm_value(ctx.names.active_version_param) == "v1.0.0"
    latest = history.events(ctx)[0]
    assert latest["what"] == "failed" and "ValidationException" in latest["detail"]

    deployments.traffic(runner, {"ModelA": 50, "ModelB": 50})
    assert agree(ctx) == {"ModelA": ("v1.0.0", 50), "ModelB": ("v2.0.0", 50)}


def test_a_promote_killed_before_the_state_is_recovered_by_the_next_operation(
    runner: Runner,
) -> None:
    ctx = runner.ctx
    kill = Rule("sagemaker:UpdateEndpointWeightsAndCapacities", "kill")
    with injected(kill) as faults, pytest.raises(Killed):
        deployments.promote(runner, "v2.0.0")
    assert faults.counts()["kill"] == 1
    assert state(ctx) == BEFORE  # the endpoint moved, the state did not

    said: list[str] = []
    ctx.progress = lambda key, text: said.append(f"{key}: {text}")
    deployments.traffic(runner, {"ModelA": 10, "ModelB": 90})
    assert any("an interrupted operation left the state" in s for s in said), said
    assert agree(ctx) == {"ModelA": ("v1.0.0", 10), "ModelB": ("v2.0.0", 90)}
    assert [e["what"] for e in history.events(ctx)[:2]] == ["traffic", "recover"]


def test_a_promote_killed_before_the_active_version_is_finished_by_the_next(
    runner: Runner,
) -> None:
    ctx = runner.ctx
    kill = Rule("ssm:PutParameter", "kill", after=1)  # the lock, then the state: killed
    with injected(kill) as faults, pytest.raises(Killed):
        deployments.promote(runner, "v2.0.0")
    assert faults.counts()["kill"] == 1
    assert agree(ctx) == {"ModelA": ("v1.0.0", 0), "ModelB": ("v2.0.0", 100)}
    assert ssm_value(ctx.names.active_version_param) == "v1.0.0"

    said: list[str] = []
    ctx.progress = lambda key, text: said.append(f"{key}: {text}")
    deployments.traffic(runner, {"ModelA": 10, "ModelB": 90})
    assert any("an interrupted promote left all the traffic on v2.0.0" in s for s in said), said
    assert agree(ctx) == {"ModelA": ("v1.0.0", 10), "ModelB": ("v2.0.0", 90)}
    assert ssm_value(ctx.names.active_version_param) == "v2.0.0"


def test_all_traffic_on_the_challenger_is_not_taken_for_a_promotion(runner: Runner) -> None:
    ctx = runner.ctx
    deployments.traffic(runner, {"ModelA": 0, "ModelB": 100})
    deployments.traffic(runner, {"ModelA": 0, "ModelB": 100})
    assert ssm_value(ctx.names.active_version_param) == "v1.0.0"


def test_lost_answers_during_a_promote(runner: Runner) -> None:
    ctx = runner.ctx
    lost = [
        Rule(call, "lose")
        for call in (
            "sagemaker:CreateModel",
            "sagemaker:CreateEndpointConfig",
            "sagemaker:UpdateEndpoint",
            "ssm:PutParameter",
        )
    ]
    with injected(*lost) as faults:
        deployments.promote(runner, "v3.0.0")
    assert faults.counts()["lose"] == len(lost)
    assert agree(ctx) == {"ModelA": ("v1.0.0", 0), "ModelB": ("v3.0.0", 100)}
    assert ssm_value(ctx.names.active_version_param) == "v3.0.0"


def test_promote_refuses_a_missing_or_changed_artifact(runner: Runner) -> None:
    ctx = runner.ctx
    s3 = ctx.aws.client("s3")
    bucket, _, key = registry.metadata(ctx, "v3.0.0")["s3Path"].removeprefix("s3://").partition("/")
    s3.put_object(Bucket=bucket, Key=key, Body=b"not what was registered")
    ctx.aws.log.reset()
    with pytest.raises(MlpipeError, match=r"has sha256 .* not the registered"):
        deployments.promote(runner, "v3.0.0")
    s3.delete_object(Bucket=bucket, Key=key)
    with pytest.raises(MlpipeError, match="is missing"):
        deployments.promote(runner, "v3.0.0")
    assert [c for c in ctx.aws.log.writes() if not c.startswith("s3:")] == []
    assert agree(ctx) == BEFORE


def test_an_operation_computes_under_the_lock(runner: Runner) -> None:
    """A traffic shift whose lock write is slow, while a promote runs: it shifts the weights
    of what the promote left, instead of undoing it with what it read before."""
    ctx = runner.ctx

    def meanwhile(_seconds: float) -> None:
        deployments.promote(runner, "v3.0.0")

    slow_lock = Rule("ssm:PutParameter", "delay", seconds=5)
    with injected(slow_lock, sleep=meanwhile) as faults:
        deployments.traffic(runner, {"ModelA": 50, "ModelB": 50})
    assert faults.counts()["delay"] == 1
    assert agree(ctx) == {"ModelA": ("v1.0.0", 50), "ModelB": ("v3.0.0", 50)}
    assert ssm_value(ctx.names.active_version_param) == "v3.0.0"
