"""AWS Batch on Fargate: the compute environment, the job queue and the inference job definition.

The compute environment is MANAGED Fargate (or Fargate Spot, `batch.compute`) in the private
subnets with the Batch security group. Batch acts through its service-linked role
`AWSServiceRoleForBatch`, the role AWS uses when none is named; apply names it explicitly and
creates it when the account has none yet. Switching between FARGATE and FARGATE_SPOT replaces the
environment and, with it, the queue that uses it: Batch deletes an environment only once it is
DISABLED and no queue uses it, and a queue only once it is DISABLED, so deletion disables first
and waits for each step (bounded by `batch.wait_timeout_seconds`).

Job definitions are immutable revisions. read() compares the latest ACTIVE revision with the
spec; a change registers a new revision and deregisters the older ones. The workflow submits
with the revision-less ARN, which Batch resolves to the latest ACTIVE revision, so a new revision
needs no change to the state machine and an execution retrying a submission after an apply gets
the current definition.
"""

from __future__ import annotations

from typing import Any, ClassVar

from botocore.exceptions import ClientError

from mlpipe.core.context import Context
from mlpipe.core.diff import Diff, without_aws_tags
from mlpipe.core.errors import MlpipeError, error_code
from mlpipe.core.resource import Observed, Outputs, Refs, Resource
from mlpipe.core.wait import Pending, TimedOut, poll
from mlpipe.naming import Arns
from mlpipe.resources import network
from mlpipe.resources.ecr import REPOSITORY
from mlpipe.resources.iam import role_key
from mlpipe.resources.logs import LogGroup

COMPUTE = "batch:compute"
QUEUE = "batch:queue"
JOB_DEFINITION = "batch:job-definition"
LOG_GROUP = "logs:batch"

SERVICE = "batch.amazonaws.com"
SERVICE_ROLE = "AWSServiceRoleForBatch"
IN_PROGRESS = ("CREATING", "UPDATING", "DELETING")
LOG_STREAM_PREFIX = "inference"
# batch_job exits 2 on a bad configuration, which another attempt cannot fix.
BAD_CONFIG_EXIT_CODE = "2"
# What the job needs to reach from the isolated subnets: its image (ECR) and CloudWatch Logs.
JOB_ENDPOINTS = ("ecr.api", "ecr.dkr", "logs")


def service_role_arn(ctx: Context) -> str:
    aws = ctx.aws
    return f"arn:{aws.partition}:iam::{aws.account}:role/aws-service-role/{SERVICE}/{SERVICE_ROLE}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def environment(ctx: Context) -> dict[str, str]:
    """The variables batch_job reads (see batch_job/config.py); the workflow adds RUN_ID,
    SHARD_INDEX and SHARD_COUNT per job."""
    names, spec = ctx.names, ctx.spec
    return {
        "AWS_DEFAULT_REGION": ctx.aws.region,
        "DATA_BUCKET": names.data_bucket,
        "TABLE_NAME": names.predictions_table,
        "ENDPOINT_NAME": names.endpoint,
        "ACTIVE_VERSION_PARAM": names.active_version_param,
        "DEPLOYMENT_PARAM": names.deployment_param,
        "MAX_BAD_RECORDS": _number(spec.batch.max_bad_records),
        "PREDICTION_TTL_DAYS": str(spec.storage.predictions_table.ttl_days),
    }


def attempt_timeout(ctx: Context) -> int:
    """Seconds one job attempt may run: all attempts fit in the workflow's timeout."""
    return max(60, ctx.spec.workflow.timeout_seconds // ctx.spec.batch.job_attempts)


def _param(prop: str) -> str:
    return prop[0].lower() + prop[1:]


class BatchResource(Resource):
    """A Batch resource with a lifecycle status (compute environment, job queue).

    Batch names both kinds' operations and parameters alike (`describe_job_queues(jobQueues=)`,
    `create_job_queue(jobQueueName=)`, `update_job_queue(jobQueue=)`, answers keyed `jobQueues`,
    `jobQueueName`, `jobQueueArn`): `api` and `field` are those stems. The calls' parameters are
    desired's properties in camel case (`ComputeResources`: `computeResources`); `updatable`
    lists those an update may set."""

    kind = "batch"
    tagging = "batch"
    api: ClassVar[str]
    field: ClassVar[str]
    updatable: ClassVar[tuple[str, ...]]

    @property
    def batch(self) -> Any:
        return self.client("batch")

    def call(self, verb: str, **params: Any) -> Any:
        return getattr(self.batch, f"{verb}_{self.api}")(**params)

    def describe(self) -> dict[str, Any] | None:
        """The live resource, None once it is gone."""
        describe = getattr(self.batch, f"describe_{self.api}s")
        found = describe(**{f"{self.field}s": [self.physical]})[f"{self.field}s"]
        live = next((x for x in found if x[f"{self.field}Name"] == self.physical), None)
        return None if live is None or live["status"] == "DELETED" else live

    def observe(self, live: dict[str, Any]) -> dict[str, Any]:
        """The live resource in desired's shape, tags aside."""
        raise NotImplementedError

    def read(self) -> Observed | None:
        live = self.describe()
        if live is None or live["status"] == "DELETING":
            return None
        state = {**self.observe(live), "Tags": without_aws_tags(live.get("tags"))}
        outputs = {"name": self.physical, "arn": live[f"{self.field}Arn"]}
        return Observed(state, outputs, self.ctx.owns(state["Tags"]))

    def create(self, desired: dict[str, Any]) -> Outputs:
        self.settled()  # one of this name may still be deleting
        params = {_param(prop): value for prop, value in desired.items()}
        created = self.call("create", **{f"{self.field}Name": self.physical}, **params)
        self.valid()
        return {"name": self.physical, "arn": created[f"{self.field}Arn"]}

    def changed(self, desired: dict[str, Any], changes: Diff) -> dict[str, Any]:
        """The update call's parameters for `changes`."""
        return {_param(p): desired[p] for p in self.updatable if changes.touches(p)}

    def update(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> Outputs:
        params = self.changed(desired, changes)
        if params:
            self.settled()
            self.call("update", **{self.field: self.physical}, **params)
            self.valid()
        return observed.outputs

    def settled(self) -> dict[str, Any] | None:
        """Wait (bounded) until no creation, update or deletion is in progress; the live
        resource, or None once it is gone."""
        timeout = self.ctx.spec.batch.wait_timeout_seconds

        def attempt() -> dict[str, Any] | Pending | None:
            live = self.describe()
            if live is not None and live["status"] in IN_PROGRESS:
                self.ctx.progress(self.key, f"waiting: {self.physical} is {live['status']}")
                return Pending(live, f"{self.physical} still {live['status']}")
            return live

        try:
            return poll(attempt, timeout=timeout, clock=self.ctx.clock)
        except TimedOut as exc:
            raise MlpipeError(
                f"{self.key}: {exc} (batch.wait_timeout_seconds allows {timeout}s); "
                "run the command again later"
            ) from exc

    def valid(self) -> None:
        live = self.settled()
        if live is None or live["status"] != "VALID":
            reason = (live or {}).get("statusReason", "it is gone")
            raise MlpipeError(f"{self.key}: {self.physical} did not become VALID: {reason}")

    def remove(self) -> None:
        """Disable, then delete, waiting for each step; absent counts as deleted."""
        live = self.settled()
        if live is None:
            return
        if live["state"] != "DISABLED":
            self.call("update", **{self.field: self.physical}, state="DISABLED")
            self.settled()
        self.call("delete", **{self.field: self.physical})
        self.settled()


class ComputeEnvironment(BatchResource):
    # An environment's type, Fargate capacity and service role cannot change in place.
    replace_on = ("Type", "ComputeResources.type", "ServiceRole")
    api, field = "compute_environment", "computeEnvironment"
    updatable = ("State",)

    def __init__(self, ctx: Context) -> None:
        subnets = tuple(network.subnet_keys(ctx.spec))
        super().__init__(
            ctx,
            "compute",
            ctx.names.compute_environment,
            depends_on=(network.SG_BATCH, *subnets),
        )
        self.subnets = subnets

    def observe(self, live: dict[str, Any]) -> dict[str, Any]:
        resources = live.get("computeResources") or {}
        return {
            "Type": live["type"],
            "State": live["state"],
            "ServiceRole": live.get("serviceRole"),
            "ComputeResources": {
                "type": resources.get("type"),
                "maxvCpus": resources.get("maxvCpus"),
                "subnets": sorted(resources.get("subnets") or []),
                "securityGroupIds": sorted(resources.get("securityGroupIds") or []),
            },
        }

    def desired(self, refs: Refs) -> dict[str, Any]:
        spec = self.ctx.spec.batch
        subnets = [refs(key, "id") for key in self.subnets]
        return {
            "Type": "MANAGED",
            "State": "ENABLED",
            "ServiceRole": service_role_arn(self.ctx),
            "ComputeResources": {
                "type": spec.compute,
                "maxvCpus": spec.max_vcpus,
                "subnets": sorted(subnets, key=str),
                "securityGroupIds": [refs(network.SG_BATCH, "id")],
            },
            "Tags": self.tags,
        }

    def _ensure_service_role(self) -> None:
        if self.find("iam", "get_role", RoleName=SERVICE_ROLE) is not None:
            return
        try:
            self.client("iam").create_service_linked_role(AWSServiceName=SERVICE)
        except ClientError as exc:  # created meanwhile: AWS says InvalidInput ("has been taken")
            if error_code(exc) not in ("InvalidInput", "EntityAlreadyExists"):
                raise

    def create(self, desired: dict[str, Any]) -> Outputs:
        self._ensure_service_role()
        return super().create(desired)

    def changed(self, desired: dict[str, Any], changes: Diff) -> dict[str, Any]:
        params = super().changed(desired, changes)
        resources = {
            key: value
            for key, value in desired["ComputeResources"].items()
            if key != "type" and changes.touches(f"ComputeResources.{key}")
        }
        return {**params, "computeResources": resources} if resources else params

    def delete(self, observed: Observed) -> None:
        self._release(observed.outputs["arn"])
        self.remove()

    def _release(self, arn: str) -> None:
        """Delete the pipeline's queue when it uses this environment (a replacement: the queue
        is replaced too); refuse when a queue mlpipe does not manage uses it."""
        pages = self.batch.get_paginator("describe_job_queues").paginate()
        users = [
            queue["jobQueueName"]
            for page in pages
            for queue in page["jobQueues"]
            if queue["status"] != "DELETED"
            and any(o["computeEnvironment"] == arn for o in queue["computeEnvironmentOrder"])
        ]
        foreign = [name for name in users if name != self.ctx.names.job_queue]
        if foreign:
            raise MlpipeError(
                f"{self.key}: job queue(s) {', '.join(foreign)} use {self.physical} and are not "
                f"mlpipe's: take {self.physical} out of them first"
            )
        if users:
            self.ctx.progress(self.key, f"deleting job queue {users[0]}, which uses it")
            JobQueue(self.ctx).remove()


class JobQueue(BatchResource):
    # The queue is replaced with the environment it uses (that environment's ARN is unknown
    # until the replacement exists).
    replace_on = ("ComputeEnvironmentOrder",)
    api, field = "job_queue", "jobQueue"
    updatable = ("State", "Priority")

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, "queue", ctx.names.job_queue, depends_on=(COMPUTE,))

    def observe(self, live: dict[str, Any]) -> dict[str, Any]:
        order = sorted(live["computeEnvironmentOrder"], key=lambda o: o["order"])
        return {
            "State": live["state"],
            "Priority": live["priority"],
            "ComputeEnvironmentOrder": [
                {"order": o["order"], "computeEnvironment": o["computeEnvironment"]} for o in order
            ],
        }

    def desired(self, refs: Refs) -> dict[str, Any]:
        return {
            "State": "ENABLED",
            "Priority": 1,
            "ComputeEnvironmentOrder": [{"order": 1, "computeEnvironment": refs(COMPUTE, "arn")}],
            "Tags": self.tags,
        }

    def delete(self, observed: Observed) -> None:
        self.remove()


def _exit_rule(rule: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.upper() if k == "action" else v) for k, v in rule.items()}


def _only(parent: dict[str, Any], key: str, field: str) -> dict[str, Any]:
    """`parent[key]` with only `field` (what mlpipe sets of it)."""
    return {field: (parent.get(key) or {}).get(field)}


def _content(definition: dict[str, Any]) -> dict[str, Any]:
    """A described revision in desired's shape (lists of name/value pairs as maps)."""
    props = definition.get("containerProperties") or {}
    retry = definition.get("retryStrategy") or {}
    logging = props.get("logConfiguration") or {}
    return {
        "Type": definition.get("type"),
        "PlatformCapabilities": sorted(definition.get("platformCapabilities") or []),
        "PropagateTags": definition.get("propagateTags", False),
        "RetryStrategy": {
            "attempts": retry.get("attempts"),
            "evaluateOnExit": [_exit_rule(r) for r in retry.get("evaluateOnExit") or []],
        },
        "Timeout": _only(definition, "timeout", "attemptDurationSeconds"),
        "ContainerProperties": {
            "image": props.get("image"),
            "jobRoleArn": props.get("jobRoleArn"),
            "executionRoleArn": props.get("executionRoleArn"),
            "resourceRequirements": {
                r["type"]: r["value"] for r in props.get("resourceRequirements") or []
            },
            "environment": {e["name"]: e["value"] for e in props.get("environment") or []},
            "fargatePlatformConfiguration": _only(
                props, "fargatePlatformConfiguration", "platformVersion"
            ),
            "networkConfiguration": _only(props, "networkConfiguration", "assignPublicIp"),
            "logConfiguration": {
                "logDriver": logging.get("logDriver"),
                "options": logging.get("options") or {},
            },
        },
        "Tags": without_aws_tags(definition.get("tags")),
    }


class JobDefinition(Resource):
    kind = "batch"
    tagging = "batch"
    tag_id = "revision_arn"
    exact = (
        "Tags",
        "ContainerProperties.environment",
        "ContainerProperties.resourceRequirements",
        "ContainerProperties.logConfiguration.options",
    )

    def __init__(self, ctx: Context) -> None:
        super().__init__(
            ctx,
            "job-definition",
            ctx.names.job_definition,
            depends_on=(
                role_key("batch-job"),
                role_key("batch-execution"),
                LOG_GROUP,
                REPOSITORY,
            ),
        )

    @property
    def batch(self) -> Any:
        return self.client("batch")

    def _active(self) -> list[dict[str, Any]]:
        """ACTIVE revisions, oldest first."""
        pages = self.batch.get_paginator("describe_job_definitions").paginate(
            jobDefinitionName=self.physical, status="ACTIVE"
        )
        found = [d for page in pages for d in page["jobDefinitions"] if d["status"] == "ACTIVE"]
        return sorted(found, key=lambda d: d["revision"])

    def _outputs(self, revision: dict[str, Any]) -> Outputs:
        """`arn` has no revision: Batch resolves it to the latest ACTIVE revision."""
        arn = revision["jobDefinitionArn"]
        return {
            "name": self.physical,
            "arn": arn.rsplit(":", 1)[0],
            "revision": revision["revision"],
            "revision_arn": arn,
        }

    def read(self) -> Observed | None:
        active = self._active()
        if not active:
            return None
        state = _content(active[-1])
        return Observed(state, self._outputs(active[-1]), self.ctx.owns(state["Tags"]))

    def desired(self, refs: Refs) -> dict[str, Any]:
        ctx, spec = self.ctx, self.ctx.spec.batch
        return {
            "Type": "container",
            "PlatformCapabilities": ["FARGATE"],
            "PropagateTags": True,
            "RetryStrategy": {
                "attempts": spec.job_attempts,
                "evaluateOnExit": [{"onExitCode": BAD_CONFIG_EXIT_CODE, "action": "EXIT"}],
            },
            "Timeout": {"attemptDurationSeconds": attempt_timeout(ctx)},
            # The root filesystem stays writable: the image runs as `nobody` and spools to
            # /tmp, and a Fargate volume mounted there would belong to root.
            "ContainerProperties": {
                "image": Arns(ctx).image(spec.image),
                "jobRoleArn": refs(role_key("batch-job"), "arn"),
                "executionRoleArn": refs(role_key("batch-execution"), "arn"),
                "resourceRequirements": {
                    "VCPU": _number(spec.vcpus),
                    "MEMORY": str(spec.memory_mib),
                },
                "environment": environment(ctx),
                "fargatePlatformConfiguration": {"platformVersion": "LATEST"},
                "networkConfiguration": {"assignPublicIp": "DISABLED"},
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {
                        "awslogs-group": ctx.names.batch_log_group,
                        "awslogs-region": ctx.aws.region,
                        "awslogs-stream-prefix": LOG_STREAM_PREFIX,
                    },
                },
            },
            "Tags": self.tags,
        }

    def create(self, desired: dict[str, Any]) -> Outputs:
        props = desired["ContainerProperties"]
        container = {
            **props,
            "resourceRequirements": [
                {"type": t, "value": v} for t, v in sorted(props["resourceRequirements"].items())
            ],
            "environment": [
                {"name": n, "value": v} for n, v in sorted(props["environment"].items())
            ],
        }
        registered = self.batch.register_job_definition(
            jobDefinitionName=self.physical,
            type=desired["Type"],
            platformCapabilities=desired["PlatformCapabilities"],
            containerProperties=container,
            retryStrategy=desired["RetryStrategy"],
            timeout=desired["Timeout"],
            propagateTags=desired["PropagateTags"],
            tags=desired["Tags"],
        )
        self._deregister(below=registered["revision"])
        return self._outputs(registered)

    def _deregister(self, below: int | None = None) -> None:
        for revision in self._active():
            if below is None or revision["revision"] < below:
                self.batch.deregister_job_definition(jobDefinition=revision["jobDefinitionArn"])

    def update(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> Outputs:
        return self.create(desired)  # a revision is immutable: a change is a new one

    def delete(self, observed: Observed) -> None:
        self._deregister()

    def warnings(self) -> list[str]:
        notes = []
        missing = [e for e in JOB_ENDPOINTS if e not in self.ctx.spec.network.interface_endpoints]
        if missing:
            notes.append(
                f"network.interface_endpoints has no {', '.join(missing)}: Fargate jobs in the "
                "isolated subnets cannot pull their image from ECR or send their logs"
            )
        image = Arns(self.ctx).image(self.ctx.spec.batch.image)
        if ".dkr.ecr." not in image.split("/", 1)[0]:
            notes.append(
                f"batch.image {image} is not in ECR: the isolated subnets reach no other registry"
            )
        return notes


def resources(ctx: Context) -> list[Resource]:
    return [
        LogGroup(ctx, "batch", ctx.names.batch_log_group, ctx.spec.monitoring.log_retention_days),
        ComputeEnvironment(ctx),
        JobQueue(ctx),
        JobDefinition(ctx),
    ]
