"""SageMaker serving on moto (with mlpipe's endpoint extensions): models, endpoint configs, the
endpoint reconciled to the deployment state in Parameter Store. Behaviours only real AWS shows
are driven with botocore's Stubber and SageMaker's real error codes at the end."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError
from botocore.stub import ANY, Stubber
from pydantic import ValidationError

from mlpipe.core.context import Context
from mlpipe.core.errors import MlpipeError
from mlpipe.core.executor import Report, Status, execute
from mlpipe.core.plan import Action, plan_apply, plan_destroy
from mlpipe.core.resource import Observed, Refs
from mlpipe.ops.deploy import deploy
from mlpipe.ops.state import DeploymentState, load_state, save_state
from mlpipe.resources import iam, kms, sagemaker
from mlpipe.resources.sagemaker import ENDPOINT, MODELS, Endpoint, Serving
from tests.resources.endpoint_support import (
    TRANSITION_SECONDS,
    FakeTime,
    client,
    configs,
    endpoint,
    fake_time,
    live_config,
    serving,
    state,
    targets,
    weights,
)
from tests.resources.serving import with_spec
from tests.support import Shared, build_once, converge, four_step

PROMOTED = state(("ModelA", "v2.0.0", 80), ("ModelB", "v1.0.0", 20))


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch, ctx: Context) -> FakeTime:
    return fake_time(monkeypatch, ctx)


@pytest.fixture
def progress(ctx: Context) -> list[str]:
    messages: list[str] = []
    ctx.progress = lambda key, message: messages.append(f"{key}: {message}")
    return messages


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Shared[Report]:
    return build_once(
        tmp_path_factory.mktemp("built"), lambda ctx: converge(serving(ctx)), fake_time
    )


@pytest.fixture
def applied(ctx: Context, clock: FakeTime, built: Shared[Report]) -> Context:
    """The stack applied: a copy of the account one converge built for the module."""
    built.restore()
    return ctx


def key_arn(ctx: Context) -> str:
    return client("kms").describe_key(KeyId=ctx.names.kms_alias)["KeyMetadata"]["Arn"]


def step(plan: Any, key: str) -> Any:
    return next(s for s in plan.steps if s.key == key)


def capture(ctx: Context, operation: str) -> list[dict[str, Any]]:
    """The parameters of every `operation` call mlpipe's sagemaker client makes from now on."""
    calls: list[dict[str, Any]] = []
    ctx.aws.client("sagemaker").meta.events.register(
        f"provide-client-params.sagemaker.{operation}",
        lambda params, **_: calls.append(dict(params)),
    )
    return calls


# --- Create, idempotency, live properties -------------------------------------------------------


def test_four_step_over_the_serving_set(ctx: Context, clock: FakeTime, progress: list[str]):
    four_step(ctx, serving(ctx))

    creating = [m for m in progress if m.startswith(f"{ENDPOINT}: creating the endpoint")]
    assert (
        creating[0] == f"{ENDPOINT}: creating the endpoint: Creating, 0s elapsed of 30m00s budget"
    )
    # Polls back off from 0.25 s: the last one before the 60 s transition is at 45.75 s.
    assert creating[-1].endswith("Creating, 46s elapsed of 30m00s budget")
    assert endpoint(ctx)["EndpointStatus"] == "InService"


def test_endpoint_serves_80_20_with_data_capture(applied: Context):
    ctx, key = applied, key_arn(applied)
    config = live_config(ctx)
    variants = {v["VariantName"]: v for v in config["ProductionVariants"]}
    assert variants == {
        "ModelA": {
            "VariantName": "ModelA",
            "ModelName": ctx.names.model("v1.0.0"),
            "InitialInstanceCount": 1,
            "InstanceType": "ml.m5.large",
            "InitialVariantWeight": 0.8,
        },
        "ModelB": {
            "VariantName": "ModelB",
            "ModelName": ctx.names.model("v2.0.0"),
            "InitialInstanceCount": 1,
            "InstanceType": "ml.m5.large",
            "InitialVariantWeight": 0.2,
        },
    }
    assert config["DataCaptureConfig"] == {
        "EnableCapture": True,
        "InitialSamplingPercentage": 10,
        "DestinationS3Uri": f"s3://{ctx.names.model_bucket}/data-capture",
        "KmsKeyId": key,
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
    }
    assert config["KmsKeyId"] == key
    assert config["EndpointConfigName"].startswith(ctx.names.endpoint_config_prefix)

    live = endpoint(ctx)
    assert live["EndpointStatus"] == "InService"
    assert weights(ctx) == {"ModelA": 0.8, "ModelB": 0.2}
    sm = client("sagemaker")
    for arn in (live["EndpointArn"], config["EndpointConfigArn"]):
        tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=arn)["Tags"]}
        assert tags["mlpipe:pipeline"] == "ml-pipeline-prod"
        assert tags["mlpipe:resource"] == ENDPOINT
        assert tags["CostCenter"] == "ml-platform"


def test_one_model_per_version_from_its_metadata(applied: Context):
    ctx, sm = applied, client("sagemaker")
    role = client("iam").get_role(RoleName=ctx.names.role("sagemaker"))["Role"]["Arn"]
    for version in ("v1.0.0", "v2.0.0"):
        meta = json.loads(
            client("ssm").get_parameter(Name=ctx.names.metadata_param(version))["Parameter"][
                "Value"
            ]
        )
        model = sm.describe_model(ModelName=ctx.names.model(version))
        assert model["PrimaryContainer"] == {"Image": meta["image"], "ModelDataUrl": meta["s3Path"]}
        key = f"models/sha256/{meta['sha256']}/model.tar.gz"  # the spec's artifact, uploaded
        assert meta["s3Path"] == f"s3://{ctx.names.model_bucket}/{key}"
        assert model["ExecutionRoleArn"] == role
        tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=model["ModelArn"])["Tags"]}
        assert tags["mlpipe:resource"] == MODELS


def test_first_apply_seeds_the_deployment_parameter_from_the_spec(applied: Context):
    seeded = load_state(applied)
    assert seeded == DeploymentState.from_spec(applied)
    assert [(v.name, v.version, v.weight) for v in seeded.variants] == [
        ("ModelA", "v1.0.0", 80),
        ("ModelB", "v2.0.0", 20),
    ]
    raw = client("ssm").get_parameter(Name=applied.names.deployment_param)["Parameter"]["Value"]
    assert raw == seeded.to_json()


# --- The deployment state drives the endpoint ---------------------------------------------------


def test_weight_only_change_is_one_weights_call_and_no_new_config(applied: Context):
    ctx = applied
    before = endpoint(ctx)["EndpointConfigName"]
    save_state(ctx, state(("ModelA", "v1.0.0", 70), ("ModelB", "v2.0.0", 30)))

    plan = plan_apply(serving(ctx))
    assert [s.key for s in plan.changes] == [ENDPOINT]
    assert step(plan, ENDPOINT).diff.paths() == ["Weights.ModelA", "Weights.ModelB"]
    ctx.aws.log.reset()
    assert execute(plan).ok

    log = ctx.aws.log
    assert log.count("sagemaker:UpdateEndpointWeightsAndCapacities") == 1
    assert log.count("sagemaker:CreateEndpointConfig") == 0
    assert log.count("sagemaker:UpdateEndpoint") == 0
    assert weights(ctx) == {"ModelA": 0.7, "ModelB": 0.3}
    assert endpoint(ctx)["EndpointConfigName"] == before
    assert not plan_apply(serving(ctx)).changes


def test_new_instance_type_makes_a_new_config_and_keeps_weights_and_previous(applied: Context):
    ctx = applied
    save_state(ctx, state(("ModelA", "v1.0.0", 70), ("ModelB", "v2.0.0", 30)))
    converge(serving(ctx))
    previous = endpoint(ctx)["EndpointConfigName"]
    bigger = with_spec(ctx, "endpoint", instance_type="ml.c5.xlarge")
    updates = capture(ctx, "UpdateEndpoint")

    plan = plan_apply(serving(bigger))
    assert [s.key for s in plan.changes] == [ENDPOINT]
    assert "EndpointConfig.ProductionVariants" in step(plan, ENDPOINT).diff.paths()
    ctx.aws.log.reset()
    assert execute(plan).ok

    config = live_config(ctx)
    assert config["EndpointConfigName"] != previous
    assert {v["InstanceType"] for v in config["ProductionVariants"]} == {"ml.c5.xlarge"}
    # Every attempt (the first may meet the new config's consistency window) keeps them.
    assert updates and all(u["RetainAllVariantProperties"] for u in updates)
    assert previous in configs(ctx)
    assert weights(ctx) == {"ModelA": 0.7, "ModelB": 0.3}
    # A variant changing instance type leaves autoscaling during the update and comes back.
    calls = ctx.aws.log.calls
    update = calls.index("sagemaker:UpdateEndpoint")
    assert calls.count("application-autoscaling:DeregisterScalableTarget") == 2
    assert calls.index("application-autoscaling:DeregisterScalableTarget") < update
    assert calls.index("application-autoscaling:RegisterScalableTarget") > update
    assert targets(ctx) == {"ModelA": (1, 10), "ModelB": (1, 10)}
    assert not plan_apply(serving(bigger)).changes


def test_pruning_keeps_the_live_and_the_previous_config(applied: Context):
    ctx = applied
    made = {}
    for instance_type in ("ml.m5.large", "ml.c5.xlarge", "ml.c5.2xlarge"):
        converge(serving(with_spec(ctx, "endpoint", instance_type=instance_type)))
        made[instance_type] = endpoint(ctx)["EndpointConfigName"]
    assert configs(ctx) == sorted(made.values())  # keep_configs is 3

    # Back to the oldest config: it is live, the newest is the previous one.
    converge(serving(ctx))
    assert endpoint(ctx)["EndpointConfigName"] == made["ml.m5.large"]
    assert configs(ctx) == sorted(made.values())

    converge(serving(with_spec(ctx, "endpoint", instance_type="ml.c5.4xlarge")))
    live = endpoint(ctx)["EndpointConfigName"]
    # Kept: live, previous (the oldest by creation time), and the newest other one.
    assert configs(ctx) == sorted([live, made["ml.m5.large"], made["ml.c5.2xlarge"]])


def test_an_apply_after_a_promotion_deploys_it_and_never_undoes_it(applied: Context):
    ctx = applied
    save_state(ctx, PROMOTED)

    plan = plan_apply(serving(ctx))
    assert [s.key for s in plan.changes] == [ENDPOINT]
    assert execute(plan).ok
    served = {v["VariantName"]: v["ModelName"] for v in live_config(ctx)["ProductionVariants"]}
    assert served == {"ModelA": ctx.names.model("v2.0.0"), "ModelB": ctx.names.model("v1.0.0")}
    assert weights(ctx) == {"ModelA": 0.8, "ModelB": 0.2}

    ctx.aws.log.reset()
    again = plan_apply(serving(ctx))
    assert not again.changes
    assert execute(again).ok
    assert ctx.aws.log.writes() == []
    assert load_state(ctx) == PROMOTED


def test_a_served_version_without_an_artifact_blocks_what_serves_it(applied: Context):
    save_state(applied, state(("ModelA", "v9.0.0", 80), ("ModelB", "v2.0.0", 20)))
    plan = plan_apply(serving(applied))
    blocked = {s.key: s.blocked for s in plan.steps if s.blocked}
    reason = (
        "v9.0.0 has no artifact (set models.versions.v9.0.0.artifact or run "
        "mlpipe models register v9.0.0 PATH)"
    )
    assert blocked == {"sagemaker:models": reason, "sagemaker:endpoint": reason}
    applied.aws.log.reset()
    report = execute(plan)
    assert report.outcomes["sagemaker:endpoint"].error == f"blocked: {reason}"
    assert not report.ok
    assert applied.aws.log.writes() == []


def test_a_failed_update_is_reported_with_its_failure_reason(applied: Context, clock: FakeTime):
    ctx, sm = applied, client("sagemaker")
    before = endpoint(ctx)["EndpointConfigName"]
    save_state(ctx, state(("ModelA", "v2.0.0", 80), ("ModelB", "v2.0.0", 20)))
    # The model the new config needs disappears while SageMaker deploys it.
    gone = ctx.names.model("v2.0.0")

    def delete_model_once() -> None:
        clock.on_sleep.remove(delete_model_once)
        sm.delete_model(ModelName=gone)

    clock.on_sleep.append(delete_model_once)

    report = execute(plan_apply(serving(ctx)))

    outcome = report.outcomes[ENDPOINT]
    assert outcome.status is Status.FAILED
    assert f'Could not find model "arn:aws:sagemaker:us-east-1:123456789012:model/{gone}"' in (
        outcome.error or ""
    )
    assert f"still serves {before}" in (outcome.error or "")
    live = endpoint(ctx)
    assert (live["EndpointStatus"], live["EndpointConfigName"]) == ("InService", before)
    assert targets(ctx) == {"ModelA": (1, 10), "ModelB": (1, 10)}

    # The next apply creates the model again and the update goes through.
    converge(serving(ctx))
    served = {v["ModelName"] for v in live_config(ctx)["ProductionVariants"]}
    assert served == {gone}


def test_waits_for_an_operation_in_progress_then_repairs_weight_drift(
    applied: Context, clock: FakeTime, progress: list[str]
):
    ctx = applied
    client("sagemaker").update_endpoint_weights_and_capacities(
        EndpointName=ctx.names.endpoint,
        DesiredWeightsAndCapacities=[
            {"VariantName": "ModelA", "DesiredWeight": 0.5},
            {"VariantName": "ModelB", "DesiredWeight": 0.5},
        ],
    )
    assert endpoint(ctx)["EndpointStatus"] == "Updating"

    plan = plan_apply(serving(ctx))
    assert step(plan, ENDPOINT).action is Action.UPDATE
    assert step(plan, ENDPOINT).diff.paths() == ["Weights.ModelA", "Weights.ModelB"]
    assert execute(plan).ok  # a weights call while Updating would be refused

    assert any(
        m.startswith(
            f"{ENDPOINT}: waiting for the endpoint's current operation to finish: Updating"
        )
        for m in progress
    )
    assert any("shifting traffic to ModelA 80%, ModelB 20%" in m for m in progress)
    assert weights(ctx) == {"ModelA": 0.8, "ModelB": 0.2}


def test_tag_drift_is_repaired(applied: Context):
    ctx, sm = applied, client("sagemaker")
    arn = endpoint(ctx)["EndpointArn"]
    sm.delete_tags(ResourceArn=arn, TagKeys=["CostCenter"])
    sm.add_tags(ResourceArn=arn, Tags=[{"Key": "stray", "Value": "x"}])

    plan = plan_apply(serving(ctx))
    assert step(plan, ENDPOINT).diff.paths() == ["Tags"]
    assert execute(plan).ok
    tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=arn)["Tags"]}
    assert tags["CostCenter"] == "ml-platform" and "stray" not in tags


def test_a_failed_endpoint_is_created_again(applied: Context, clock: FakeTime):
    ctx, sm = applied, client("sagemaker")
    live = endpoint(ctx)
    tags = sm.list_tags(ResourceArn=live["EndpointArn"])["Tags"]
    sm.delete_endpoint(EndpointName=ctx.names.endpoint)
    sm.delete_model(ModelName=ctx.names.model("v1.0.0"))
    sm.create_endpoint(
        EndpointName=ctx.names.endpoint, EndpointConfigName=live["EndpointConfigName"], Tags=tags
    )
    clock.now += TRANSITION_SECONDS
    assert endpoint(ctx)["EndpointStatus"] == "Failed"

    plan = plan_apply(serving(ctx))
    assert step(plan, MODELS).action is Action.UPDATE
    assert step(plan, ENDPOINT).action is Action.REPLACE
    assert step(plan, ENDPOINT).diff.paths() == ["Status"]
    assert execute(plan).ok

    assert endpoint(ctx)["EndpointStatus"] == "InService"
    assert weights(ctx) == {"ModelA": 0.8, "ModelB": 0.2}
    assert targets(ctx) == {"ModelA": (1, 10), "ModelB": (1, 10)}
    assert not plan_apply(serving(ctx)).changes


def test_destroy_removes_endpoint_configs_models_targets_and_the_endpoint_log_group(
    applied: Context, clock: FakeTime
):
    ctx = applied
    name = f"/aws/sagemaker/Endpoints/{ctx.names.endpoint}"
    [group] = client("logs").describe_log_groups(logGroupNamePrefix=name)["logGroups"]
    assert (group["kmsKeyId"], group["retentionInDays"]) == (key_arn(ctx), 30)
    converge(serving(with_spec(ctx, "endpoint", instance_type="ml.c5.xlarge")))
    assert len(configs(ctx)) == 2

    report = execute(plan_destroy(serving(ctx)))

    assert report.ok, {k: o.error for k, o in report.outcomes.items() if o.error}
    assert client("sagemaker").list_endpoints()["Endpoints"] == []
    assert configs(ctx) == []
    assert client("sagemaker").list_models(NameContains=ctx.names.model_prefix)["Models"] == []
    assert targets(ctx) == {}
    assert client("logs").describe_log_groups(logGroupNamePrefix=name)["logGroups"] == []


def test_instances_with_local_storage_get_no_config_key_and_a_warning(ctx: Context):
    gpu = with_spec(ctx, "endpoint", instance_type="ml.g4dn.xlarge")
    resource, desired = endpoint_resource(gpu)
    assert desired["EndpointConfig"]["KmsKeyId"] is None
    assert desired["EndpointConfig"]["DataCaptureConfig"]["KmsKeyId"] == KEY_ARN
    assert any("ml.g4dn.xlarge has local NVMe storage" in w for w in resource.warnings())
    assert endpoint_resource(ctx)[1]["EndpointConfig"]["KmsKeyId"] == KEY_ARN
    assert [
        sagemaker.local_storage(t) for t in ("ml.m5d.large", "ml.g5.xlarge", "ml.c5.xlarge")
    ] == [
        True,
        True,
        False,
    ]


def test_the_sagemaker_role_may_pull_every_declared_model_image(ctx: Context):
    versions = dict(ctx.spec.models.versions)
    versions["v2.0.0"] = versions["v2.0.0"].model_copy(
        update={"image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/custom-model:2"}
    )
    custom = with_spec(ctx, "models", versions=versions)
    statements = iam.role_definitions(custom, KEY_ARN)["sagemaker"][1]
    pull = next(s for s in statements if s["Sid"] == "PullImage")
    assert pull["Resource"] == [
        "arn:aws:ecr:us-east-1:123456789012:repository/custom-model",
        "arn:aws:ecr:us-east-1:683313688378:repository/sagemaker-scikit-learn",
    ]


# --- The operations entry point and the state model ---------------------------------------------


def test_deploy_runs_the_same_reconcilers_for_the_serving_resources(applied: Context):
    ctx = applied
    wanted = state(("ModelA", "v1.0.0", 60), ("ModelB", "v2.0.0", 40))
    save_state(ctx, wanted)

    result = deploy(ctx, wanted, timeout=600)

    assert result.ok and result.errors == {}
    assert result.endpoint["config"] == endpoint(ctx)["EndpointConfigName"]
    assert weights(ctx) == {"ModelA": 0.6, "ModelB": 0.4}
    changed = {s.key: s.action for s in result.plan.changes}
    assert changed == {ENDPOINT: Action.UPDATE}
    assert not plan_apply(serving(ctx)).changes


def test_deploy_reads_what_the_serving_resources_use_and_leaves_it_alone(applied: Context):
    ctx, sm = applied, client("sagemaker")
    role = ctx.names.role("sagemaker")
    client("iam").untag_role(RoleName=role, TagKeys=["CostCenter"])  # drift outside serving
    arn = endpoint(ctx)["EndpointArn"]
    sm.add_tags(ResourceArn=arn, Tags=[{"Key": "stray", "Value": "x"}])  # drift in serving

    result = deploy(ctx, load_state(ctx))

    assert result.ok
    assert {s.key: s.action for s in result.plan.changes} == {ENDPOINT: Action.UPDATE}
    assert "outside this plan" in step(result.plan, iam.role_key("sagemaker")).notes
    assert "CostCenter" not in {
        t["Key"] for t in client("iam").list_role_tags(RoleName=role)["Tags"]
    }
    assert "stray" not in {t["Key"] for t in sm.list_tags(ResourceArn=arn)["Tags"]}
    assert step(plan_apply(serving(ctx)), iam.role_key("sagemaker")).action is Action.UPDATE


def test_deploy_needs_the_pipeline_applied_first(ctx: Context, clock: FakeTime):
    with pytest.raises(MlpipeError, match=r"kms:key.*run `mlpipe apply` first"):
        deploy(ctx, DeploymentState.from_spec(ctx))


def test_the_state_round_trips_and_is_validated(ctx: Context):
    assert load_state(ctx) is None
    save_state(ctx, PROMOTED)
    assert load_state(ctx) == PROMOTED
    assert json.loads(
        client("ssm").get_parameter(Name=ctx.names.deployment_param)["Parameter"]["Value"]
    ) == {
        "variants": [
            {"name": "ModelA", "version": "v2.0.0", "weight": 80},
            {"name": "ModelB", "version": "v1.0.0", "weight": 20},
        ],
        "champion": "ModelA",
        "challenger": "ModelB",
    }

    client("ssm").put_parameter(
        Name=ctx.names.deployment_param,
        Value=json.dumps(
            {
                "variants": [{"name": "ModelA", "version": "v1.0.0", "weight": 90}],
                "champion": "ModelA",
            }
        ),
        Type="String",
        Overwrite=True,
    )
    with pytest.raises(MlpipeError, match="weights must add up to 100, got 90"):
        load_state(ctx)
    recorded = PROMOTED.model_copy(update={"operation": {"kind": "promote", "to": "v2.0.0"}})
    save_state(ctx, recorded)
    assert load_state(ctx) == recorded
    assert '"operation": {"kind": "promote", "to": "v2.0.0"}' in recorded.to_json()
    with pytest.raises(ValidationError, match="challenger ModelC is not one of the variants"):
        DeploymentState.model_validate({**json.loads(PROMOTED.to_json()), "challenger": "ModelC"})


# --- Behaviours only real AWS shows: botocore Stubber with SageMaker's error codes ---------------

KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
NOW = datetime(2030, 1, 1, tzinfo=UTC)


def described(ctx: Context, status: str, config: str, **extra: Any) -> dict[str, Any]:
    return {
        "EndpointName": ctx.names.endpoint,
        "EndpointArn": f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{ctx.names.endpoint}",
        "EndpointConfigName": config,
        "EndpointStatus": status,
        "CreationTime": NOW,
        "LastModifiedTime": NOW,
        **extra,
    }


def serving_variants(a: float, b: float) -> dict[str, Any]:
    return {
        "ProductionVariants": [
            {"VariantName": "ModelA", "CurrentWeight": a, "DesiredWeight": a},
            {"VariantName": "ModelB", "CurrentWeight": b, "DesiredWeight": b},
        ]
    }


def config_response(ctx: Context, name: str) -> dict[str, Any]:
    return {
        "EndpointConfigName": name,
        "EndpointConfigArn": f"arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/{name}",
        "ProductionVariants": [
            {"VariantName": v, "ModelName": ctx.names.model(version), "InstanceType": "ml.m5.large"}
            for v, version in (("ModelA", "v1.0.0"), ("ModelB", "v2.0.0"))
        ],
        "CreationTime": NOW,
    }


def not_found(stub: Stubber, operation: str, what: str) -> None:
    stub.add_client_error(
        operation,
        service_error_code="ValidationException",
        service_message=f'Could not find {what} "arn:aws:sagemaker:us-east-1:123456789012:x".',
        http_status_code=400,
    )


@pytest.fixture
def stubbed(ctx: Context, clock: FakeTime) -> Any:
    stub = Stubber(ctx.aws.client("sagemaker"))
    with stub:
        yield stub
    stub.assert_no_pending_responses()


def endpoint_resource(ctx: Context, timeout: float | None = None) -> tuple[Endpoint, dict]:
    resource = Endpoint(ctx, Serving(ctx, DeploymentState.from_spec(ctx)), timeout)
    return resource, resource.desired(Refs({kms.KEY: {"arn": KEY_ARN}}))


def test_create_polls_creating_until_in_service(
    ctx: Context, stubbed: Stubber, progress: list[str]
):
    resource, desired = endpoint_resource(ctx)
    name = desired["EndpointConfigName"]
    not_found(stubbed, "describe_endpoint", "endpoint")
    not_found(stubbed, "describe_endpoint_config", "endpoint configuration")
    stubbed.add_response(
        "create_endpoint_config",
        {"EndpointConfigArn": f"arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/{name}"},
        {
            "EndpointConfigName": name,
            "ProductionVariants": [
                {
                    "VariantName": "ModelA",
                    "ModelName": ctx.names.model("v1.0.0"),
                    "InstanceType": "ml.m5.large",
                    "InitialInstanceCount": 1,
                    "InitialVariantWeight": 0.8,
                },
                {
                    "VariantName": "ModelB",
                    "ModelName": ctx.names.model("v2.0.0"),
                    "InstanceType": "ml.m5.large",
                    "InitialInstanceCount": 1,
                    "InitialVariantWeight": 0.2,
                },
            ],
            "DataCaptureConfig": {
                "EnableCapture": True,
                "InitialSamplingPercentage": 10,
                "DestinationS3Uri": f"s3://{ctx.names.model_bucket}/data-capture",
                "KmsKeyId": KEY_ARN,
                "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            },
            "KmsKeyId": KEY_ARN,
            "Tags": ANY,
        },
    )
    stubbed.add_response(
        "create_endpoint",
        {"EndpointArn": described(ctx, "Creating", name)["EndpointArn"]},
        {"EndpointName": ctx.names.endpoint, "EndpointConfigName": name, "Tags": ANY},
    )
    for _ in range(7):
        stubbed.add_response("describe_endpoint", described(ctx, "Creating", name))
    stubbed.add_response(
        "describe_endpoint", described(ctx, "InService", name, **serving_variants(0.8, 0.2))
    )

    outputs = resource.create(desired)

    assert outputs["config"] == name
    assert progress == [
        f"{ENDPOINT}: creating the endpoint: Creating, {t} elapsed of 30m00s budget"
        # Polls back off: 0.25 s, doubling up to 15 s.
        for t in ("0s", "0s", "1s", "2s", "4s", "8s", "16s")
    ]


def test_a_wait_beyond_its_budget_fails_clearly_and_never_updates_in_progress(
    ctx: Context, stubbed: Stubber, progress: list[str], clock: FakeTime
):
    resource, desired = endpoint_resource(ctx, timeout=60)
    observed = Observed({**desired, "EndpointConfigName": "old", "Weights": {}})
    # At 0, 0.25, 0.75, 1.75, 3.75, 7.75, 15.75, 30.75, 45.75 and 60 seconds.
    for _ in range(10):
        stubbed.add_response("describe_endpoint", described(ctx, "Updating", "old"))

    with pytest.raises(MlpipeError) as failure:
        resource.update(observed, desired, resource.diff(observed.state, desired))

    assert str(failure.value).startswith(
        f"endpoint {ctx.names.endpoint} is still Updating after 1m00s (waiting for the "
        "endpoint's current operation to finish); endpoint.wait_timeout_seconds allows 1m00s"
    )
    assert clock.now == 60
    assert len(progress) == 9 and progress[-1].endswith("Updating, 46s elapsed of 1m00s budget")


def test_an_update_sagemaker_could_not_deploy_reports_its_failure_reason(
    ctx: Context, stubbed: Stubber
):
    resource, desired = endpoint_resource(ctx)
    target = desired["EndpointConfigName"]
    observed = Observed({**desired, "EndpointConfigName": "old"})
    reason = (
        "The primary container for production variant ModelA did not pass the ping health "
        "check. Please check CloudWatch logs for this endpoint."
    )
    stubbed.add_response(
        "describe_endpoint", described(ctx, "InService", "old", **serving_variants(0.8, 0.2))
    )
    stubbed.add_response("describe_endpoint_config", config_response(ctx, target))
    stubbed.add_response("describe_endpoint_config", config_response(ctx, "old"))
    stubbed.add_response(
        "update_endpoint",
        {"EndpointArn": described(ctx, "Updating", "old")["EndpointArn"]},
        {
            "EndpointName": ctx.names.endpoint,
            "EndpointConfigName": target,
            "RetainAllVariantProperties": True,
            "ExcludeRetainedVariantProperties": [{"VariantPropertyType": "DataCaptureConfig"}],
        },
    )
    stubbed.add_response("describe_endpoint", described(ctx, "Updating", "old"))
    stubbed.add_response(
        "describe_endpoint",
        described(ctx, "InService", "old", FailureReason=reason, **serving_variants(0.8, 0.2)),
    )

    with pytest.raises(MlpipeError) as failure:
        resource.update(observed, desired, resource.diff(observed.state, desired))

    assert str(failure.value) == (
        f"endpoint {ctx.names.endpoint}: the update to {target} failed: {reason} "
        "(the endpoint still serves old)"
    )


def test_could_not_find_endpoint_means_absent_and_other_errors_surface(
    ctx: Context, stubbed: Stubber
):
    resource, _ = endpoint_resource(ctx)
    stubbed.add_client_error(
        "describe_endpoint",
        service_error_code="ValidationException",
        service_message=(
            'Could not find endpoint "arn:aws:sagemaker:us-east-1:123456789012:endpoint/'
            f'{ctx.names.endpoint}".'
        ),
        http_status_code=400,
    )
    assert resource.read() is None

    stubbed.add_client_error(
        "describe_endpoint",
        service_error_code="AccessDeniedException",
        service_message="User is not authorized to perform: sagemaker:DescribeEndpoint",
        http_status_code=400,
    )
    with pytest.raises(ClientError, match="AccessDenied"):
        resource.read()
