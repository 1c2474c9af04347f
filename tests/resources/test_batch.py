"""AWS Batch on moto: Fargate compute environment, job queue, job definition revisions."""

from __future__ import annotations

import dataclasses
from typing import Any

import boto3
import pytest

from batch_job.config import load_config
from mlpipe.core.context import Context
from mlpipe.core.executor import Report, execute
from mlpipe.core.plan import Action, plan_apply, plan_destroy
from mlpipe.core.resource import Resource
from mlpipe.resources import batch, ecr, iam, kms, network
from mlpipe.resources.iam import role_key
from mlpipe.spec import BatchSpec
from tests.resources.serving import needed
from tests.support import Shared, build_once, converge, four_step

REGION = "us-east-1"


def batch_stack(ctx: Context) -> list[Resource]:
    """Batch with everything it depends on: key, roles, subnets, group, repository."""
    pool = [r for m in (kms, iam, network, ecr) for r in m.resources(ctx)]
    return needed(batch.resources(ctx), pool)


def with_batch(ctx: Context, **changes: Any) -> Context:
    """The same run context with `batch` settings changed."""
    spec = ctx.spec.model_copy(update={"batch": ctx.spec.batch.model_copy(update=changes)})
    return dataclasses.replace(ctx, spec=spec)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Shared[Report]:
    return build_once(tmp_path_factory.mktemp("built"), lambda ctx: converge(batch_stack(ctx)))


@pytest.fixture
def applied(ctx: Context, built: Shared[Report]) -> tuple[Context, Report]:
    """The stack applied: a copy of the account one converge built for the module."""
    return ctx, built.restore()


def test_four_step_and_a_second_apply_registers_no_revision(ctx: Context) -> None:
    """The idempotency check, once: the other tests start from `applied` (one converge)."""
    four_step(ctx, batch_stack(ctx))
    # The log holds the converged plan and apply.
    assert ctx.aws.log.count("batch:RegisterJobDefinition") == 0
    assert [d["revision"] for d in revisions(ctx)] == [1]


def client() -> Any:
    return boto3.client("batch", region_name=REGION)


def environment_of(ctx: Context) -> dict[str, Any]:
    return client().describe_compute_environments(
        computeEnvironments=[ctx.names.compute_environment]
    )["computeEnvironments"][0]


def queue_of(ctx: Context) -> dict[str, Any]:
    return client().describe_job_queues(jobQueues=[ctx.names.job_queue])["jobQueues"][0]


def revisions(ctx: Context, status: str = "ACTIVE") -> list[dict[str, Any]]:
    found = client().describe_job_definitions(
        jobDefinitionName=ctx.names.job_definition, status=status
    )["jobDefinitions"]
    return sorted(found, key=lambda d: d["revision"])


def step(plan: Any, key: str) -> Any:
    return next(s for s in plan.steps if s.key == key)


def test_compute_environment_is_managed_fargate_in_the_private_subnets(
    applied: tuple[Context, Report],
) -> None:
    ctx, report = applied
    env = environment_of(ctx)
    assert env["type"] == "MANAGED"
    assert env["state"] == "ENABLED" and env["status"] == "VALID"
    resources = env["computeResources"]
    assert resources["type"] == "FARGATE"
    assert resources["maxvCpus"] == 256
    subnets = {report.outputs[k]["id"] for k in network.subnet_keys(ctx.spec)}
    assert len(subnets) == 2 and set(resources["subnets"]) == subnets
    assert resources["securityGroupIds"] == [report.outputs[network.SG_BATCH]["id"]]
    assert env["serviceRole"] == (
        f"arn:aws:iam::{ctx.aws.account}:role/aws-service-role/batch.amazonaws.com/"
        "AWSServiceRoleForBatch"
    )
    assert env["tags"]["mlpipe:pipeline"] == "ml-pipeline-prod"
    assert env["tags"]["CostCenter"] == "ml-platform"
    private = boto3.client("ec2", region_name=REGION).describe_subnets(SubnetIds=list(subnets))
    assert not any(s["MapPublicIpOnLaunch"] for s in private["Subnets"])


def test_queue_is_enabled_on_the_environment(applied: tuple[Context, Report]) -> None:
    ctx, _ = applied
    queue = queue_of(ctx)
    assert queue["state"] == "ENABLED" and queue["status"] == "VALID"
    assert queue["computeEnvironmentOrder"] == [
        {"order": 1, "computeEnvironment": environment_of(ctx)["computeEnvironmentArn"]}
    ]
    assert queue["tags"]["mlpipe:resource"] == batch.QUEUE


def test_job_definition_runs_the_job_on_fargate(applied: tuple[Context, Report]) -> None:
    ctx, report = applied
    [definition] = revisions(ctx)
    assert definition["platformCapabilities"] == ["FARGATE"]
    assert definition["retryStrategy"]["attempts"] == 2
    assert definition["timeout"] == {"attemptDurationSeconds": 3600}
    assert definition["propagateTags"] is True
    props = definition["containerProperties"]
    assert {r["type"]: r["value"] for r in props["resourceRequirements"]} == {
        "VCPU": "4",
        "MEMORY": "8192",
    }
    assert props["jobRoleArn"] == report.outputs[role_key("batch-job")]["arn"]
    assert props["executionRoleArn"] == report.outputs[role_key("batch-execution")]["arn"]
    assert props["image"] == (
        f"{ctx.aws.account}.dkr.ecr.{REGION}.amazonaws.com/ml-pipeline-prod-batch:1.0.0"
    )
    assert props["networkConfiguration"] == {"assignPublicIp": "DISABLED"}
    assert props["fargatePlatformConfiguration"] == {"platformVersion": "LATEST"}
    assert props["logConfiguration"] == {
        "logDriver": "awslogs",
        "options": {
            "awslogs-group": ctx.names.batch_log_group,
            "awslogs-region": REGION,
            "awslogs-stream-prefix": "inference",
        },
    }
    env = {e["name"]: e["value"] for e in props["environment"]}
    assert env["DATA_BUCKET"] == ctx.names.data_bucket
    assert env["TABLE_NAME"] == ctx.names.predictions_table
    assert env["ENDPOINT_NAME"] == ctx.names.endpoint
    assert env["ACTIVE_VERSION_PARAM"] == ctx.names.active_version_param
    assert env["DEPLOYMENT_PARAM"] == ctx.names.deployment_param
    assert env["MAX_BAD_RECORDS"] == "0.05"
    # The job accepts this environment once the workflow adds the run and shard.
    config = load_config({**env, "RUN_ID": "run-1", "SHARD_INDEX": "1", "SHARD_COUNT": "2"})
    assert config.endpoint_name == ctx.names.endpoint and config.max_bad_records == 0.05
    assert (
        report.outputs[batch.JOB_DEFINITION]["arn"]
        == definition["jobDefinitionArn"].rsplit(":", 1)[0]
    )
    logs = boto3.client("logs", region_name=REGION)
    group = logs.describe_log_groups(logGroupNamePrefix=ctx.names.batch_log_group)["logGroups"][0]
    assert group["retentionInDays"] == 30 and group["kmsKeyId"] == report.outputs[kms.KEY]["arn"]


def test_changing_memory_registers_exactly_one_revision(applied: tuple[Context, Report]) -> None:
    ctx, _ = applied
    bigger = with_batch(ctx, memory_mib=9216)
    plan = plan_apply(batch_stack(bigger))
    change = step(plan, batch.JOB_DEFINITION)
    assert change.action is Action.UPDATE
    assert change.diff.paths() == ["ContainerProperties.resourceRequirements"]
    assert {s.key for s in plan.changes} == {batch.JOB_DEFINITION}
    ctx.aws.log.reset()
    report = execute(plan)
    assert report.ok
    assert ctx.aws.log.count("batch:RegisterJobDefinition") == 1
    [latest] = revisions(ctx)
    assert latest["revision"] == 2
    assert {r["type"]: r["value"] for r in latest["containerProperties"]["resourceRequirements"]}[
        "MEMORY"
    ] == "9216"
    assert [d["revision"] for d in revisions(ctx, "INACTIVE")] == [1]
    assert report.outputs[batch.JOB_DEFINITION]["revision"] == 2
    assert not plan_apply(batch_stack(bigger)).changes


def test_fargate_spot_replaces_the_environment_and_its_queue(
    applied: tuple[Context, Report],
) -> None:
    ctx, _ = applied
    spot = with_batch(ctx, compute="FARGATE_SPOT")
    plan = plan_apply(batch_stack(spot))
    compute = step(plan, batch.COMPUTE)
    assert compute.action is Action.REPLACE
    assert [(c.path, c.after, c.replace) for c in compute.diff.changes] == [
        ("ComputeResources.type", "FARGATE_SPOT", True)
    ]
    assert step(plan, batch.QUEUE).action is Action.REPLACE
    assert step(plan, batch.JOB_DEFINITION).action is Action.NOOP
    report = execute(plan)
    assert report.ok, {k: o.error for k, o in report.outcomes.items() if o.error}
    env = environment_of(ctx)
    assert env["computeResources"]["type"] == "FARGATE_SPOT" and env["state"] == "ENABLED"
    queue = queue_of(ctx)
    assert queue["state"] == "ENABLED"
    assert queue["computeEnvironmentOrder"][0]["computeEnvironment"] == env["computeEnvironmentArn"]
    assert not plan_apply(batch_stack(spot)).changes


def test_drift_is_repaired_in_place_and_tags_alone_are_tagged_on_the_revision_not_registered(
    applied: tuple[Context, Report],
) -> None:
    ctx, report = applied
    client().update_compute_environment(
        computeEnvironment=ctx.names.compute_environment, computeResources={"maxvCpus": 16}
    )
    client().update_job_queue(jobQueue=ctx.names.job_queue, state="DISABLED")
    arn = report.outputs[batch.JOB_DEFINITION]["revision_arn"]
    client().untag_resource(resourceArn=arn, tagKeys=["CostCenter"])
    plan = plan_apply(batch_stack(ctx))
    assert {s.key: (s.action, s.diff.paths()) for s in plan.changes} == {
        batch.COMPUTE: (Action.UPDATE, ["ComputeResources.maxvCpus"]),
        batch.QUEUE: (Action.UPDATE, ["State"]),
        batch.JOB_DEFINITION: (Action.UPDATE, ["Tags"]),
    }
    ctx.aws.log.reset()
    assert execute(plan).ok
    writes = ctx.aws.log.writes()
    assert "batch:CreateComputeEnvironment" not in writes
    assert "batch:CreateJobQueue" not in writes
    assert "batch:RegisterJobDefinition" not in writes
    assert environment_of(ctx)["computeResources"]["maxvCpus"] == 256
    assert queue_of(ctx)["state"] == "ENABLED"
    assert client().list_tags_for_resource(resourceArn=arn)["tags"]["CostCenter"] == "ml-platform"
    assert not plan_apply(batch_stack(ctx)).changes


def test_a_foreign_revision_is_superseded(applied: tuple[Context, Report]) -> None:
    ctx, _ = applied
    [ours] = revisions(ctx)
    props = dict(ours["containerProperties"], image="someone/else:latest")
    client().register_job_definition(
        jobDefinitionName=ctx.names.job_definition,
        type="container",
        platformCapabilities=["FARGATE"],
        containerProperties=props,
    )
    plan = plan_apply(batch_stack(ctx))
    paths = step(plan, batch.JOB_DEFINITION).diff.paths()
    assert {"ContainerProperties.image", "Tags"} <= set(paths)
    converge(batch_stack(ctx))
    [latest] = revisions(ctx)
    assert (
        latest["revision"] == 3
        and latest["containerProperties"]["image"] == ours["containerProperties"]["image"]
    )


def test_destroy_disables_then_deletes(applied: tuple[Context, Report]) -> None:
    ctx, _ = applied
    report = execute(plan_destroy(batch_stack(ctx)))
    assert report.ok, {k: o.error for k, o in report.outcomes.items() if o.error}
    assert (
        client().describe_compute_environments(computeEnvironments=[ctx.names.compute_environment])[
            "computeEnvironments"
        ]
        == []
    )
    assert client().describe_job_queues(jobQueues=[ctx.names.job_queue])["jobQueues"] == []
    assert revisions(ctx) == []
    # The service-linked role is the account's, not the pipeline's.
    boto3.client("iam").get_role(RoleName="AWSServiceRoleForBatch")


def test_an_environment_a_foreign_queue_uses_is_not_deleted(
    applied: tuple[Context, Report],
) -> None:
    ctx, _ = applied
    client().create_job_queue(
        jobQueueName="someone-elses",
        state="ENABLED",
        priority=5,
        computeEnvironmentOrder=[
            {"order": 1, "computeEnvironment": environment_of(ctx)["computeEnvironmentArn"]}
        ],
    )
    report = execute(plan_destroy(batch_stack(ctx)))
    failure = report.outcomes[batch.COMPUTE].error or ""
    assert "someone-elses" in failure
    assert environment_of(ctx)["state"] == "ENABLED"


def test_plan_warns_when_jobs_cannot_reach_ecr_or_logs(ctx: Context) -> None:
    def endpoints(*services: str) -> Context:
        network = ctx.spec.network.model_copy(update={"interface_endpoints": list(services)})
        return dataclasses.replace(ctx, spec=ctx.spec.model_copy(update={"network": network}))

    cut_off = batch.JobDefinition(endpoints("sagemaker.runtime", "ssm", "logs"))
    assert any("has no ecr.api, ecr.dkr:" in note for note in cut_off.warnings())
    reachable = endpoints("sagemaker.runtime", "ssm", "logs", "ecr.api", "ecr.dkr")
    assert batch.JobDefinition(reachable).warnings() == []
    elsewhere = with_batch(ctx, image="docker.io/library/python:3.11")
    assert any("not in ECR" in note for note in batch.JobDefinition(elsewhere).warnings())


def test_spec_refuses_a_size_fargate_does_not_offer() -> None:
    assert BatchSpec(vcpus=4, memory_mib=9216).memory_mib == 9216
    with pytest.raises(ValueError, match="Fargate runs 4 vCPU"):
        BatchSpec(vcpus=4, memory_mib=4096)
    with pytest.raises(ValueError, match="512, 1024, 2048"):
        BatchSpec(vcpus=0.25, memory_mib=1536)
