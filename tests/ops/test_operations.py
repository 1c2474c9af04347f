"""register → traffic → promote → rollback → history, with SSM and SageMaker read back."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest

from mlpipe.core.context import Context
from mlpipe.core.errors import UsageError
from mlpipe.core.executor import Report
from mlpipe.ops import deployments, history, registry
from mlpipe.ops.deployments import Canary, PromotionAborted, Runner
from mlpipe.ops.lock import LockHeld, acquire, operation_lock
from tests.resources.endpoint_support import FakeTime, build_serving, fake_time
from tests.support import Shared

REGION = "us-east-1"


def sm() -> object:
    return boto3.client("sagemaker", region_name=REGION)


def ssm_value(name: str) -> str:
    return boto3.client("ssm", region_name=REGION).get_parameter(Name=name)["Parameter"]["Value"]


def live(ctx: Context) -> dict[str, tuple[float, str]]:
    """variant → (weight, model name) as SageMaker serves it."""
    client = boto3.client("sagemaker", region_name=REGION)
    endpoint = client.describe_endpoint(EndpointName=ctx.names.endpoint)
    config = client.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    models = {v["VariantName"]: v["ModelName"] for v in config["ProductionVariants"]}
    return {
        v["VariantName"]: (round(v["CurrentWeight"], 4), models[v["VariantName"]])
        for v in endpoint["ProductionVariants"]
    }


def model_dir(tmp_path: Path, version: str) -> Path:
    path = tmp_path / version
    (path / "code").mkdir(parents=True)
    (path / "model.json").write_text(json.dumps({"version": version}))
    (path / "code" / "inference.py").write_text("def model_fn(d):\n    return d\n")
    return path


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch, ctx: Context) -> FakeTime:
    return fake_time(monkeypatch, ctx)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Shared[Report]:
    return build_serving(tmp_path_factory)


@pytest.fixture
def runner(ctx: Context, clock: FakeTime, built: Shared[Report]) -> Runner:
    built.restore()  # a copy of the account the module's one apply built
    return Runner(ctx)


def test_the_weekly_sequence(runner: Runner, tmp_path: Path) -> None:
    ctx, names = runner.ctx, runner.ctx.names
    model = names.model
    assert live(ctx) == {"ModelA": (0.8, model("v1.0.0")), "ModelB": (0.2, model("v2.0.0"))}

    ctx.aws.log.reset()
    outcome = deployments.traffic(runner, {"ModelA": 90, "ModelB": 10})
    assert live(ctx) == {"ModelA": (0.9, model("v1.0.0")), "ModelB": (0.1, model("v2.0.0"))}
    assert ctx.aws.log.count("sagemaker:UpdateEndpointWeightsAndCapacities") == 1
    assert ctx.aws.log.count("sagemaker:CreateEndpointConfig") == 0
    assert [v.weight for v in outcome.after.variants] == [90, 10]
    state = json.loads(ssm_value(names.deployment_param))
    assert [v["weight"] for v in state["variants"]] == [90, 10]
    assert state["operation"]["kind"] == "traffic"

    ctx.aws.log.reset()
    deployments.promote(runner, "v2.0.0")
    assert ssm_value(names.active_version_param) == "v2.0.0"
    assert live(ctx) == {"ModelA": (0.0, model("v1.0.0")), "ModelB": (1.0, model("v2.0.0"))}
    state = json.loads(ssm_value(names.deployment_param))
    assert (state["champion"], state["challenger"]) == ("ModelB", "ModelA")
    assert ctx.aws.log.count("sagemaker:UpdateEndpoint") == 0  # v2 was already served

    ctx.aws.log.reset()
    back = deployments.rollback(runner)
    assert ssm_value(names.active_version_param) == "v1.0.0"
    assert live(ctx) == {"ModelA": (1.0, model("v1.0.0")), "ModelB": (0.0, model("v2.0.0"))}
    assert ctx.aws.log.count("sagemaker:UpdateEndpoint") == 0
    assert ctx.aws.log.count("sagemaker:UpdateEndpointWeightsAndCapacities") == 1
    assert back.active_before == "v2.0.0" and back.active_after == "v1.0.0"

    trail = history.events(ctx)
    assert [e["what"] for e in trail][:3] == ["rollback", "promote", "traffic"]
    assert sorted(e["what"] for e in trail[3:]) == ["apply", "register", "register"]
    assert trail[0]["who"] == ctx.aws.caller_arn
    assert sorted(e["to"] for e in trail if e["what"] == "register") == ["v1.0.0", "v2.0.0"]


def test_rollback_to_a_version_no_variant_serves_reuses_its_config(
    runner: Runner, tmp_path: Path
) -> None:
    ctx = runner.ctx
    registry.register(ctx, "v3.0.0", model_dir(tmp_path, "v3.0.0"))
    deployments.promote(runner, "v2.0.0")  # champion ModelB
    deployments.promote(runner, "v3.0.0")  # deployed on the challenger, ModelA
    assert live(ctx)["ModelA"] == (1.0, ctx.names.model("v3.0.0"))
    ctx.aws.log.reset()
    deployments.rollback(runner, to="v1.0.0")
    assert live(ctx)["ModelA"] == (1.0, ctx.names.model("v1.0.0"))
    assert ctx.aws.log.count("sagemaker:UpdateEndpoint") == 1
    assert ctx.aws.log.count("sagemaker:CreateEndpointConfig") == 0
    assert ssm_value(ctx.names.active_version_param) == "v1.0.0"


def test_promoting_an_unregistered_version_changes_nothing(runner: Runner) -> None:
    runner.ctx.aws.log.reset()
    with pytest.raises(UsageError, match=r"v9\.9\.9 is not registered"):
        deployments.promote(runner, "v9.9.9")
    assert runner.ctx.aws.log.writes() == []


def test_a_version_taking_another_feature_count_is_not_promoted(
    runner: Runner, tmp_path: Path
) -> None:
    ctx = runner.ctx
    meta = registry.register(ctx, "v3.0.0", model_dir(tmp_path, "v3.0.0"), feature_count=12)
    assert meta["featureCount"] == 12
    assert registry.metadata(ctx, "v3.0.0")["featureCount"] == 12
    ctx.aws.log.reset()
    with pytest.raises(UsageError, match=r"v3\.0\.0 takes 12 features; the handlers accept 30"):
        deployments.promote(runner, "v3.0.0")
    assert ctx.aws.log.writes() == []


def test_bad_weights_change_nothing(runner: Runner) -> None:
    runner.ctx.aws.log.reset()
    for weights, message in (
        ({"ModelA": 80, "ModelB": 30}, "weights must add up to 100, got 110"),
        ({"ModelC": 100}, "unknown variant"),
        ({"ModelA": 120, "ModelB": -20}, "must be 0 to 100"),
    ):
        with pytest.raises(UsageError, match=message):
            deployments.traffic(runner, weights)
    assert runner.ctx.aws.log.writes() == []


def test_a_held_lock_refuses_a_second_operation(runner: Runner) -> None:
    ctx = runner.ctx
    held = pytest.raises(LockHeld, match="another operation holds the lock")
    with operation_lock(ctx, "traffic"), held:
        deployments.traffic(runner, {"ModelA": 50, "ModelB": 50})
    assert live(ctx)["ModelA"][0] == 0.8


def test_force_unlock_takes_over_from_a_holder_known_to_be_gone(runner: Runner) -> None:
    ctx = runner.ctx
    said: list[str] = []
    ctx.progress = lambda key, message: said.append(message)
    acquire(ctx, "promote")  # an operator whose process is gone, its lease not yet expired
    runner.force_unlock = True
    deployments.traffic(runner, {"ModelA": 50, "ModelB": 50})
    assert live(ctx)["ModelA"][0] == 0.5
    assert any("taking over from promote by" in m for m in said), said


def test_an_expired_lease_is_taken_over(runner: Runner) -> None:
    ctx = runner.ctx
    long_ago = datetime.now(UTC) - timedelta(hours=2)
    acquire(ctx, "promote", now=lambda: long_ago)  # its operator died without releasing it
    deployments.traffic(runner, {"ModelA": 50, "ModelB": 50})
    assert live(ctx)["ModelA"][0] == 0.5


def test_a_canary_rolls_back_when_an_alarm_fires(
    runner: Runner, clock: FakeTime, tmp_path: Path
) -> None:
    ctx = runner.ctx
    registry.register(ctx, "v3.0.0", model_dir(tmp_path, "v3.0.0"))
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    alarm = ctx.names.alarm("invocation-5xx-ModelB")

    def fire() -> None:
        if clock.now > 30:
            cloudwatch.set_alarm_state(AlarmName=alarm, StateValue="ALARM", StateReason="test")

    clock.on_sleep.append(fire)
    with pytest.raises(PromotionAborted, match="invocation-5xx-ModelB"):
        deployments.promote(runner, "v3.0.0", Canary((10, 50, 100), interval=300, poll=10))
    assert ssm_value(ctx.names.active_version_param) == "v1.0.0"
    before = live(ctx)
    weights = {k: w for k, (w, _) in before.items()}
    assert weights == {"ModelA": 0.8, "ModelB": 0.2}
    # ModelB serves v2.0.0 again, not the version that fired the alarm
    assert "v3" not in before["ModelB"][1]
    state = json.loads(ssm_value(ctx.names.deployment_param))
    assert state["operation"]["kind"] == "rollback"
    assert {v["name"]: v["version"] for v in state["variants"]}["ModelB"] == "v2.0.0"


def test_a_canary_rolls_back_on_the_metrics_its_errors_publish(
    runner: Runner, clock: FakeTime, tmp_path: Path
) -> None:
    """No alarm state is set by hand: the challenger's 5XX answers are published as SageMaker
    publishes them, the embedded AWS's evaluator fires the alarm, the canary rolls back."""
    from mlpipe.local.alarms import AlarmEvaluator
    from mlpipe.local.metrics import MetricsPublisher

    ctx = runner.ctx
    registry.register(ctx, "v3.0.0", model_dir(tmp_path, "v3.0.0"))
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    publisher, evaluator = MetricsPublisher(lambda: cloudwatch), AlarmEvaluator()
    dims = {"EndpointName": ctx.names.endpoint, "VariantName": "ModelB"}

    def serve() -> None:  # while the canary waits, the challenger fails 1 request in 4
        for request in range(8):
            publisher.put(
                "AWS/SageMaker", "Invocation5XXErrors", int(request % 4 == 0), "None", dims
            )
        publisher.flush()
        evaluator.evaluate_once()

    clock.on_sleep.append(serve)
    with pytest.raises(PromotionAborted, match="invocation-5xx-ModelB in ALARM at 10%"):
        deployments.promote(runner, "v3.0.0", Canary((10, 50, 100), interval=300, poll=10))
    assert ssm_value(ctx.names.active_version_param) == "v1.0.0"
    alarm = ctx.names.alarm("invocation-5xx-ModelB")
    history = cloudwatch.describe_alarm_history(AlarmName=alarm, HistoryItemType="StateUpdate")
    assert [i["HistorySummary"] for i in history["AlarmHistoryItems"]] == [
        "Alarm updated from INSUFFICIENT_DATA to ALARM"
    ]


def test_canary_without_alarms_goes_all_the_way(runner: Runner, clock: FakeTime) -> None:
    deployments.promote(runner, "v2.0.0", Canary((25, 100), interval=120, poll=60))
    assert sum(s for s in clock.sleeps if s == 60) >= 120
    assert ssm_value(runner.ctx.names.active_version_param) == "v2.0.0"


def test_dry_run_prints_steps_and_changes_nothing(runner: Runner, tmp_path: Path) -> None:
    registry.register(runner.ctx, "v3.0.0", model_dir(tmp_path, "v3.0.0"))
    runner.ctx.aws.log.reset()
    outcome = deployments.promote(runner, "v3.0.0", Canary((10, 100), 60), dry_run=True)
    assert outcome.steps[0].startswith("deploy v3.0.0 on ModelB")
    assert runner.ctx.aws.log.writes() == []


def test_nothing_to_roll_back_to(runner: Runner) -> None:
    with pytest.raises(UsageError, match="nothing to roll back to"):
        deployments.rollback(runner)


def test_register_refuses_to_overwrite_and_validates(runner: Runner, tmp_path: Path) -> None:
    ctx = runner.ctx
    with pytest.raises(UsageError, match="already registered"):
        registry.register(ctx, "v1.0.0", model_dir(tmp_path, "v1b"))
    with pytest.raises(UsageError, match="not a version like"):
        registry.register(ctx, "1.0", model_dir(tmp_path, "x"))
    meta = registry.register(ctx, "v1.0.0", model_dir(tmp_path, "v1c"), force=True)
    s3 = boto3.client("s3", region_name=REGION)
    key = f"models/sha256/{meta['sha256']}/model.tar.gz"  # content-addressed, as apply's
    assert meta["s3Path"] == f"s3://{ctx.names.model_bucket}/{key}"
    head = s3.head_object(Bucket=ctx.names.model_bucket, Key=key)
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["ContentLength"] == meta["size"]
    rows = {r["version"]: r for r in registry.versions(ctx)}
    assert rows["v1.0.0"]["active"] and rows["v1.0.0"]["variants"] == ["ModelA"]
    assert rows["v2.0.0"]["weight"] == 20


def test_packing_is_reproducible(tmp_path: Path) -> None:
    path = model_dir(tmp_path, "v1.0.0")
    assert registry.pack(path) == registry.pack(path)
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(registry.pack(path))
    assert registry.pack(archive) == archive.read_bytes()
    (tmp_path / "junk.tar.gz").write_text("not a tar")
    with pytest.raises(UsageError, match="not a gzip tar"):
        registry.pack(tmp_path / "junk.tar.gz")


def test_baselines_parse_from_text_or_file(tmp_path: Path) -> None:
    assert registry.parse_baseline("accuracy=0.95,latency=100") == {
        "accuracy": 0.95,
        "latency": 100.0,
    }
    file = tmp_path / "b.yaml"
    file.write_text("accuracy: 0.9\n")
    assert registry.parse_baseline(str(file)) == {"accuracy": 0.9}
    with pytest.raises(UsageError):
        registry.parse_baseline("accuracy")
