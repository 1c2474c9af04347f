"""The batch workflow: a Step Functions state machine that runs one Batch job per shard, and the
EventBridge schedule that starts it.

The state machine is a Parallel state with one branch per shard (`batch.shards`); each branch
submits the job and waits for it (`batch:submitJob.sync`), retrying Batch API errors with
backoff (`workflow.retry_*`). Any failure of a shard, its timeout included, is caught on the
Parallel state, published to the alert topic and ends in a Fail state. Each shard's task times
out a little before the execution does (`workflow.timeout_seconds`): an execution's own timeout
cannot be caught, a task's can, so the alert still goes out. Executions are traced with X-Ray
and logged to CloudWatch Logs without their data. Definitions are compared parsed, so
whitespace and key order never count as a change.

The schedule (`schedule.batch_cron`) starts an execution with the scheduled event as its input
(its `time` dates the run); the execution's name is the run id the jobs get as RUN_ID.
"""

from __future__ import annotations

import json
from typing import Any

from mlpipe.core.context import Context
from mlpipe.core.diff import Diff, tags_to_list
from mlpipe.core.find import forget
from mlpipe.core.resource import Observed, Outputs, Refs, Resource
from mlpipe.naming import Arns
from mlpipe.resources.batch import JOB_DEFINITION, QUEUE
from mlpipe.resources.iam import role_key
from mlpipe.resources.kms import KEY
from mlpipe.resources.logs import LogGroup

STATE_MACHINE = "states:batch-workflow"
SCHEDULE = "events:batch-schedule"
LOG_GROUP = "logs:workflow"

PARALLEL = "RunShards"
NOTIFY = "NotifyFailure"
FAILED = "Failed"
TARGET_ID = "batch-workflow"
BATCH_ERRORS = [
    "Batch.AWSBatchException",
    "Batch.ServerException",
    "Batch.TooManyRequestsException",
]
# Time kept after the shard tasks' timeout for the failure alert, at most.
ALERT_SECONDS = 300
KEY_REUSE_SECONDS = 300
# Errors while the new execution role is not yet usable by Step Functions.
ROLE_NOT_READY = ("states-role-not-assumable", "states-logging-role-not-ready")


def shard_branch(
    ctx: Context, index: int, queue_arn: Any, job_definition_arn: Any
) -> dict[str, Any]:
    spec = ctx.spec
    state = f"Shard{index}"
    timeout = spec.workflow.timeout_seconds
    task = {
        "Type": "Task",
        "Resource": f"arn:{ctx.aws.partition}:states:::batch:submitJob.sync",
        "TimeoutSeconds": timeout - min(ALERT_SECONDS, timeout // 10),
        "Parameters": {
            "JobName": f"{ctx.names.pipeline_id}-shard-{index}",
            "JobQueue": queue_arn,
            "JobDefinition": job_definition_arn,
            "ContainerOverrides": {
                "Environment": [
                    {"Name": "RUN_ID", "Value.$": "$$.Execution.Name"},
                    {"Name": "SHARD_INDEX", "Value": str(index)},
                    {"Name": "SHARD_COUNT", "Value": str(spec.batch.shards)},
                ]
            },
        },
        "ResultSelector": {"JobId.$": "$.JobId", "JobName.$": "$.JobName", "Status.$": "$.Status"},
        "Retry": [retry(ctx, BATCH_ERRORS)],
        "End": True,
    }
    return {"StartAt": state, "States": {state: task}}


def retry(ctx: Context, errors: list[str]) -> dict[str, Any]:
    spec = ctx.spec.workflow
    return {
        "ErrorEquals": errors,
        "IntervalSeconds": spec.retry_interval_seconds,
        "MaxAttempts": spec.retry_max_attempts,
        "BackoffRate": spec.retry_backoff_rate,
    }


def definition(
    ctx: Context, queue_arn: Any, job_definition_arn: Any, topic_arn: str
) -> dict[str, Any]:
    """The state machine's Amazon States Language definition."""
    pipeline, timeout = ctx.names.pipeline_id, ctx.spec.workflow.timeout_seconds
    return {
        "Comment": f"mlpipe {pipeline}: batch inference, one AWS Batch job per shard",
        "StartAt": PARALLEL,
        "TimeoutSeconds": timeout,
        "States": {
            PARALLEL: {
                "Type": "Parallel",
                "Branches": [
                    shard_branch(ctx, i, queue_arn, job_definition_arn)
                    for i in range(ctx.spec.batch.shards)
                ],
                "ResultPath": "$.shards",
                "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": NOTIFY}],
                "End": True,
            },
            NOTIFY: {
                "Type": "Task",
                "Resource": f"arn:{ctx.aws.partition}:states:::sns:publish",
                "Parameters": {
                    "TopicArn": topic_arn,
                    "Subject": f"mlpipe {pipeline}: batch inference failed",
                    "Message.$": (
                        "States.Format('Batch inference run {} failed: {}', "
                        "$$.Execution.Name, States.JsonToString($.error))"
                    ),
                },
                "ResultPath": None,
                "Retry": [retry(ctx, ["States.ALL"])],
                "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": None, "Next": FAILED}],
                "Next": FAILED,
            },
            FAILED: {
                "Type": "Fail",
                "Error": "BatchInferenceFailed",
                "Cause": "a shard's Batch job failed or the run timed out; see the alert",
            },
        },
    }


class StateMachine(Resource):
    kind = "states"
    tagging = "stepfunctions"
    replace_on = ("Type",)
    # The definition is compared whole: a state only the live side has is a change.
    exact = ("Tags", "Definition")

    def __init__(self, ctx: Context) -> None:
        super().__init__(
            ctx,
            "batch-workflow",
            ctx.names.state_machine,
            depends_on=(QUEUE, JOB_DEFINITION, role_key("stepfunctions"), LOG_GROUP, KEY),
        )

    @property
    def arn(self) -> str:
        return Arns(self.ctx).state_machine

    @property
    def sfn(self) -> Any:
        return self.client("stepfunctions")

    def read(self) -> Observed | None:
        live = self.find("stepfunctions", "describe_state_machine", stateMachineArn=self.arn)
        if live is None or live.get("status") == "DELETING":
            return None
        logging = live.get("loggingConfiguration") or {}
        state = {
            "Type": live["type"],
            "Definition": json.loads(live["definition"]),
            "RoleArn": live["roleArn"],
            "LoggingConfiguration": {
                "level": logging.get("level", "OFF"),
                "includeExecutionData": logging.get("includeExecutionData", False),
                "destinations": logging.get("destinations", []),
            },
            "TracingConfiguration": {
                "enabled": (live.get("tracingConfiguration") or {}).get("enabled", False)
            },
            "EncryptionConfiguration": live.get("encryptionConfiguration")
            or {"type": "AWS_OWNED_KEY"},
            "Tags": self.live_tags(self.arn),
        }
        outputs = {"name": self.physical, "arn": live["stateMachineArn"]}
        return Observed(state, outputs, self.ctx.owns(state["Tags"]))

    def desired(self, refs: Refs) -> dict[str, Any]:
        return {
            "Type": "STANDARD",
            "Definition": definition(
                self.ctx,
                refs(QUEUE, "arn"),
                # With its revision: IAM authorizes SubmitJob on the ARN the request names, and
                # the role's `job-definition/<name>:*` matches only an ARN with a revision.
                refs(JOB_DEFINITION, "revision_arn"),
                Arns(self.ctx).topic,
            ),
            "RoleArn": refs(role_key("stepfunctions"), "arn"),
            "LoggingConfiguration": {
                "level": "ALL",
                "includeExecutionData": False,
                "destinations": [
                    {
                        "cloudWatchLogsLogGroup": {
                            "logGroupArn": Arns(self.ctx).log_group(
                                self.ctx.names.workflow_log_group
                            )
                        }
                    }
                ],
            },
            "TracingConfiguration": {"enabled": True},
            # Definition and execution history encrypted with the pipeline key; the data key
            # is reused for AWS's default period (API_EncryptionConfiguration).
            "EncryptionConfiguration": {
                "type": "CUSTOMER_MANAGED_KMS_KEY",
                "kmsKeyId": refs(KEY, "arn"),
                "kmsDataKeyReusePeriodSeconds": KEY_REUSE_SECONDS,
            },
            "Tags": self.tags,
        }

    def create(self, desired: dict[str, Any]) -> Outputs:
        created = self.ctx.eventually(
            lambda: self.sfn.create_state_machine(
                name=self.physical,
                type=desired["Type"],
                definition=json.dumps(desired["Definition"], indent=2),
                roleArn=desired["RoleArn"],
                loggingConfiguration=desired["LoggingConfiguration"],
                tracingConfiguration=desired["TracingConfiguration"],
                encryptionConfiguration=desired["EncryptionConfiguration"],
                tags=tags_to_list(desired["Tags"], "key", "value"),
            ),
            *ROLE_NOT_READY,
        )
        return {"name": self.physical, "arn": created["stateMachineArn"]}

    def update(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> Outputs:
        params: dict[str, Any] = {}
        if changes.touches("Definition"):
            params["definition"] = json.dumps(desired["Definition"], indent=2)
        for prop, param in (
            ("RoleArn", "roleArn"),
            ("LoggingConfiguration", "loggingConfiguration"),
            ("TracingConfiguration", "tracingConfiguration"),
            ("EncryptionConfiguration", "encryptionConfiguration"),
        ):
            if changes.touches(prop):
                params[param] = desired[prop]
        self.ctx.eventually(
            lambda: self.sfn.update_state_machine(stateMachineArn=self.arn, **params),
            *ROLE_NOT_READY,
        )
        return observed.outputs

    def delete(self, observed: Observed) -> None:
        forget(self.sfn, "delete_state_machine", stateMachineArn=self.arn)


def _target(target: dict[str, Any]) -> dict[str, Any]:
    """A target as compared: where it points, with which role, and any input it sets."""
    keys = ("Arn", "RoleArn", "Input", "InputPath", "InputTransformer", "RetryPolicy")
    return {k: target[k] for k in keys if target.get(k) is not None}


class ScheduleRule(Resource):
    kind = "events"
    tagging = "events"
    exact = ("Tags", "Targets")

    def __init__(self, ctx: Context) -> None:
        after = (STATE_MACHINE, role_key("events"))
        super().__init__(ctx, "batch-schedule", ctx.names.schedule_rule, depends_on=after)

    @property
    def events(self) -> Any:
        return self.client("events")

    def read(self) -> Observed | None:
        rule = self.find("events", "describe_rule", Name=self.physical)
        if rule is None:
            return None
        pages = self.events.get_paginator("list_targets_by_rule").paginate(Rule=self.physical)
        targets = {t["Id"]: _target(t) for page in pages for t in page["Targets"]}
        state = {
            "ScheduleExpression": rule.get("ScheduleExpression"),
            "State": rule["State"],
            "Description": rule.get("Description", ""),
            "Targets": targets,
            "Tags": self.live_tags(rule["Arn"]),
        }
        outputs = {"name": self.physical, "arn": rule["Arn"]}
        return Observed(state, outputs, self.ctx.owns(state["Tags"]))

    def desired(self, refs: Refs) -> dict[str, Any]:
        schedule = self.ctx.spec.schedule
        return {
            "ScheduleExpression": schedule.batch_cron,
            "State": "ENABLED" if schedule.enabled else "DISABLED",
            "Description": f"mlpipe {self.ctx.names.pipeline_id}: start the batch workflow",
            "Targets": {
                TARGET_ID: {
                    "Arn": refs(STATE_MACHINE, "arn"),
                    "RoleArn": refs(role_key("events"), "arn"),
                }
            },
            "Tags": self.tags,
        }

    def _put_rule(self, desired: dict[str, Any], **extra: Any) -> str:
        return str(
            self.events.put_rule(
                Name=self.physical,
                ScheduleExpression=desired["ScheduleExpression"],
                State=desired["State"],
                Description=desired["Description"],
                **extra,
            )["RuleArn"]
        )

    def _put_targets(self, targets: dict[str, dict[str, Any]]) -> None:
        answer = self.events.put_targets(
            Rule=self.physical, Targets=[{"Id": i, **t} for i, t in sorted(targets.items())]
        )
        if answer.get("FailedEntryCount"):
            failed = answer["FailedEntries"][0]
            raise RuntimeError(
                f"{self.key}: target {failed['TargetId']} refused: {failed['ErrorMessage']}"
            )

    def create(self, desired: dict[str, Any]) -> Outputs:
        arn = self._put_rule(desired, Tags=tags_to_list(desired["Tags"]))
        self._put_targets(desired["Targets"])
        return {"name": self.physical, "arn": arn}

    def update(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> Outputs:
        if any(changes.touches(p) for p in ("ScheduleExpression", "State", "Description")):
            self._put_rule(desired)
        if changes.touches("Targets"):
            self._put_targets(desired["Targets"])
            stale = sorted(set(observed.state["Targets"]) - set(desired["Targets"]))
            if stale:
                self.events.remove_targets(Rule=self.physical, Ids=stale)
        return observed.outputs

    def delete(self, observed: Observed) -> None:
        targets = sorted(observed.state["Targets"])
        if targets:
            forget(self.events, "remove_targets", Rule=self.physical, Ids=targets)
        forget(self.events, "delete_rule", Name=self.physical)


def resources(ctx: Context) -> list[Resource]:
    return [
        LogGroup(
            ctx, "workflow", ctx.names.workflow_log_group, ctx.spec.monitoring.log_retention_days
        ),
        StateMachine(ctx),
        ScheduleRule(ctx),
    ]
