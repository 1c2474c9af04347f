"""The batch workflow on moto: the Step Functions state machine and its EventBridge schedule."""

from __future__ import annotations

import dataclasses
import json
from collections import OrderedDict
from typing import Any

import boto3
import pytest

from mlpipe.core.context import Context
from mlpipe.core.executor import Report, execute
from mlpipe.core.plan import Action, plan_apply, plan_destroy
from mlpipe.core.resource import Resource
from mlpipe.local.batch_auth import SubmitDenied, authorize_submit_job
from mlpipe.naming import Arns
from mlpipe.resources import batch, ecr, iam, kms, network, workflow
from mlpipe.resources.iam import role_key
from tests.resources.serving import needed
from tests.support import Shared, build_once, converge, four_step

REGION = "us-east-1"
BATCH_ERRORS = {
    "Batch.AWSBatchException",
    "Batch.ServerException",
    "Batch.TooManyRequestsException",
}


def stack(ctx: Context) -> list[Resource]:
    """The workflow with everything it depends on: Batch and its foundation, the workflow's
    roles."""
    pool = [r for m in (kms, iam, network, ecr, batch) for r in m.resources(ctx)]
    return needed(workflow.resources(ctx), pool)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Shared[Report]:
    return build_once(tmp_path_factory.mktemp("built"), lambda ctx: converge(stack(ctx)))


@pytest.fixture
def applied(ctx: Context, built: Shared[Report]) -> tuple[Context, Report]:
    """The stack applied: a copy of the account one converge built for the module."""
    return ctx, built.restore()


def test_four_step(ctx: Context) -> None:
    """The idempotency check, once: the other tests start from `applied` (one converge)."""
    four_step(ctx, stack(ctx))


def sfn() -> Any:
    return boto3.client("stepfunctions", region_name=REGION)


def events() -> Any:
    return boto3.client("events", region_name=REGION)


def machine(ctx: Context) -> dict[str, Any]:
    return sfn().describe_state_machine(stateMachineArn=Arns(ctx).state_machine)


def states_of(ctx: Context) -> dict[str, Any]:
    return json.loads(machine(ctx)["definition"])


def test_state_machine_runs_one_batch_job_per_shard_in_parallel(
    applied: tuple[Context, Report],
) -> None:
    ctx, report = applied
    definition = states_of(ctx)
    assert definition["TimeoutSeconds"] == 7200
    parallel = definition["States"][definition["StartAt"]]
    assert parallel["Type"] == "Parallel"
    branches = parallel["Branches"]
    assert len(branches) == 2
    queue_arn = report.outputs[batch.QUEUE]["arn"]
    job_definition_arn = report.outputs[batch.JOB_DEFINITION]["revision_arn"]
    assert job_definition_arn.endswith(":1"), "named with its revision, as IAM evaluates it"
    for index, branch in enumerate(branches):
        task = branch["States"][branch["StartAt"]]
        assert task["Type"] == "Task" and task.get("End") is True
        # A task's timeout can be caught (an execution's cannot): the alert still goes out.
        assert task["TimeoutSeconds"] == 6900
        assert task["Resource"] == "arn:aws:states:::batch:submitJob.sync"
        params = task["Parameters"]
        assert params["JobQueue"] == queue_arn
        assert params["JobDefinition"] == job_definition_arn
        assert params["JobName"] == f"ml-pipeline-prod-shard-{index}"
        env = params["ContainerOverrides"]["Environment"]
        assert {"Name": "RUN_ID", "Value.$": "$$.Execution.Name"} in env
        assert {"Name": "SHARD_INDEX", "Value": str(index)} in env
        assert {"Name": "SHARD_COUNT", "Value": "2"} in env
        [retry] = task["Retry"]
        assert set(retry["ErrorEquals"]) == BATCH_ERRORS
        assert (retry["IntervalSeconds"], retry["MaxAttempts"], retry["BackoffRate"]) == (
            30,
            2,
            2.0,
        )


def test_a_failure_is_caught_published_and_fails_the_run(
    applied: tuple[Context, Report],
) -> None:
    ctx, _ = applied
    states = states_of(ctx)["States"]
    parallel = states[workflow.PARALLEL]
    [catch] = parallel["Catch"]
    assert catch["ErrorEquals"] == ["States.ALL"]
    notify = states[catch["Next"]]
    assert notify["Type"] == "Task"
    assert notify["Resource"] == "arn:aws:states:::sns:publish"
    assert notify["Parameters"]["TopicArn"] == (
        f"arn:aws:sns:{REGION}:{ctx.aws.account}:{ctx.names.alert_topic}"
    )
    assert "$.error" in notify["Parameters"]["Message.$"]
    assert [c["Next"] for c in notify["Catch"]] == [notify["Next"]]
    failed = states[notify["Next"]]
    assert failed["Type"] == "Fail" and failed["Error"] == "BatchInferenceFailed"


def test_state_machine_traces_logs_and_runs_as_its_role(applied: tuple[Context, Report]) -> None:
    ctx, report = applied
    live = machine(ctx)
    assert live["type"] == "STANDARD"
    assert live["tracingConfiguration"] == {"enabled": True}
    group = f"arn:aws:logs:{REGION}:{ctx.aws.account}:log-group:{ctx.names.workflow_log_group}:*"
    assert live["loggingConfiguration"] == {
        "level": "ALL",
        "includeExecutionData": False,
        "destinations": [{"cloudWatchLogsLogGroup": {"logGroupArn": group}}],
    }
    logs = boto3.client("logs", region_name=REGION)
    [log_group] = logs.describe_log_groups(logGroupNamePrefix=ctx.names.workflow_log_group)[
        "logGroups"
    ]
    assert log_group["retentionInDays"] == 30
    assert live["roleArn"] == report.outputs[role_key("stepfunctions")]["arn"]
    tags = sfn().list_tags_for_resource(resourceArn=live["stateMachineArn"])["tags"]
    assert {"key": "mlpipe:pipeline", "value": "ml-pipeline-prod"} in tags


def test_schedule_starts_the_state_machine_with_a_role_that_may_only_do_that(
    applied: tuple[Context, Report],
) -> None:
    ctx, report = applied
    rule = events().describe_rule(Name=ctx.names.schedule_rule)
    assert rule["ScheduleExpression"] == "cron(0 2 * * ? *)"
    assert rule["State"] == "ENABLED"
    [target] = events().list_targets_by_rule(Rule=ctx.names.schedule_rule)["Targets"]
    machine_arn = report.outputs[workflow.STATE_MACHINE]["arn"]
    assert target["Arn"] == machine_arn
    role = report.outputs[role_key("events")]
    assert target["RoleArn"] == role["arn"]
    client = boto3.client("iam")
    assert client.list_attached_role_policies(RoleName=role["name"])["AttachedPolicies"] == []
    names = client.list_role_policies(RoleName=role["name"])["PolicyNames"]
    statements = [
        s
        for name in names
        for s in client.get_role_policy(RoleName=role["name"], PolicyName=name)["PolicyDocument"][
            "Statement"
        ]
    ]
    key_arn = report.outputs["kms:key"]["arn"]
    assert sorted((s["Effect"], s["Action"], s["Resource"]) for s in statements) == [
        # The execution input is encrypted with the state machine's key.
        ("Allow", ["kms:Decrypt", "kms:GenerateDataKey"], [key_arn]),
        ("Allow", ["states:StartExecution"], [machine_arn]),
    ]
    trust = client.get_role(RoleName=role["name"])["Role"]["AssumeRolePolicyDocument"]
    assert trust["Statement"][0]["Principal"] == {"Service": ["events.amazonaws.com"]}
    tags = events().list_tags_for_resource(ResourceARN=rule["Arn"])["Tags"]
    assert {"Key": "mlpipe:resource", "Value": workflow.SCHEDULE} in tags


def test_an_equal_definition_written_differently_is_no_change(
    applied: tuple[Context, Report],
) -> None:
    ctx, _ = applied
    definition = states_of(ctx)

    def reordered(value: Any) -> Any:
        if isinstance(value, dict):
            return OrderedDict((k, reordered(value[k])) for k in reversed(list(value)))
        if isinstance(value, list):
            return [reordered(v) for v in value]
        return value

    text = json.dumps(reordered(definition), separators=(",", ":"))
    assert text != machine(ctx)["definition"]
    sfn().update_state_machine(stateMachineArn=Arns(ctx).state_machine, definition=text)
    ctx.aws.log.reset()
    plan = plan_apply(stack(ctx))
    assert not plan.changes
    assert execute(plan).ok
    assert ctx.aws.log.writes() == []
    assert machine(ctx)["definition"] == text


def test_definition_and_schedule_drift_are_repaired(applied: tuple[Context, Report]) -> None:
    ctx, _ = applied
    definition = states_of(ctx)
    definition["TimeoutSeconds"] = 60
    del definition["States"][workflow.PARALLEL]["Catch"]
    sfn().update_state_machine(
        stateMachineArn=Arns(ctx).state_machine,
        definition=json.dumps(definition),
        tracingConfiguration={"enabled": False},
    )
    rule = ctx.names.schedule_rule
    events().disable_rule(Name=rule)
    events().put_targets(
        Rule=rule, Targets=[{"Id": "intruder", "Arn": Arns(ctx).topic, "Input": "{}"}]
    )
    plan = plan_apply(stack(ctx))
    assert {s.key: (s.action, s.diff.paths()) for s in plan.changes} == {
        workflow.STATE_MACHINE: (Action.UPDATE, ["Definition", "TracingConfiguration.enabled"]),
        workflow.SCHEDULE: (Action.UPDATE, ["State", "Targets"]),
    }
    converge(stack(ctx))
    repaired = states_of(ctx)
    assert repaired["TimeoutSeconds"] == 7200
    assert repaired["States"][workflow.PARALLEL]["Catch"][0]["Next"] == workflow.NOTIFY
    assert machine(ctx)["tracingConfiguration"] == {"enabled": True}
    assert events().describe_rule(Name=rule)["State"] == "ENABLED"
    targets = events().list_targets_by_rule(Rule=rule)["Targets"]
    assert [t["Id"] for t in targets] == [workflow.TARGET_ID]


def test_a_disabled_schedule_and_more_shards_are_updates(applied: tuple[Context, Report]) -> None:
    ctx, _ = applied
    spec = ctx.spec.model_copy(
        update={
            "schedule": ctx.spec.schedule.model_copy(update={"enabled": False}),
            "batch": ctx.spec.batch.model_copy(update={"shards": 3}),
        }
    )
    changed = dataclasses.replace(ctx, spec=spec)
    plan = plan_apply(stack(changed))
    assert {s.key: s.action for s in plan.changes} == {
        workflow.STATE_MACHINE: Action.UPDATE,
        workflow.SCHEDULE: Action.UPDATE,
    }
    converge(stack(changed))
    assert events().describe_rule(Name=ctx.names.schedule_rule)["State"] == "DISABLED"
    branches = states_of(ctx)["States"][workflow.PARALLEL]["Branches"]
    assert len(branches) == 3
    last = branches[2]["States"][branches[2]["StartAt"]]["Parameters"]["ContainerOverrides"]
    assert {"Name": "SHARD_COUNT", "Value": "3"} in last["Environment"]
    assert {"Name": "SHARD_INDEX", "Value": "2"} in last["Environment"]


def test_destroy_removes_the_schedule_and_the_state_machine(
    applied: tuple[Context, Report],
) -> None:
    ctx, _ = applied
    report = execute(plan_destroy(stack(ctx)))
    assert report.ok, {k: o.error for k, o in report.outcomes.items() if o.error}
    assert sfn().list_state_machines()["stateMachines"] == []
    with pytest.raises(events().exceptions.ResourceNotFoundException):
        events().describe_rule(Name=ctx.names.schedule_rule)


def submit_allowed(ctx: Context, job_definition: str) -> bool:
    queue = states_of(ctx)["States"][workflow.PARALLEL]["Branches"][0]
    params = next(iter(queue["States"].values()))["Parameters"]
    try:
        authorize_submit_job(
            boto3.client("iam", region_name=REGION),
            machine(ctx)["roleArn"],
            params["JobQueue"],
            job_definition,
            REGION,
            ctx.aws.account,
        )
    except SubmitDenied:
        return False
    return True


def test_the_role_allows_the_submission_in_the_form_iam_evaluates(
    applied: tuple[Context, Report],
) -> None:
    ctx, report = applied
    outputs = report.outputs[batch.JOB_DEFINITION]
    task = next(iter(states_of(ctx)["States"][workflow.PARALLEL]["Branches"][0]["States"].values()))
    assert submit_allowed(ctx, task["Parameters"]["JobDefinition"])
    # IAM evaluates a reference without a revision as job-definition/<name>, which the role's
    # job-definition/<name>:* does not match: that submission would be denied on AWS.
    assert not submit_allowed(ctx, outputs["arn"])
    assert not submit_allowed(ctx, outputs["name"])
    assert submit_allowed(ctx, f"{outputs['name']}:7")
