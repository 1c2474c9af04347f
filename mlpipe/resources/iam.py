"""IAM roles for every service of the pipeline, each with inline policies scoped to ARNs.

`*` appears as a resource only for actions AWS offers no resource-level permission for, each
marked where it is written.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from mlpipe.core import images
from mlpipe.core.context import Context
from mlpipe.core.diff import Diff, policy, sync_tags, tags_from_list, tags_to_list
from mlpipe.core.errors import is_not_found
from mlpipe.core.resource import Observed, Outputs, Refs, Resource
from mlpipe.resources import ecr
from mlpipe.resources.kms import KEY

Statement = dict[str, Any]


def allow(sid: str, actions: list[str], resources: list[str] | str, **extra: Any) -> Statement:
    return {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources, **extra}


@dataclass(frozen=True)
class Arns:
    """ARNs of the pipeline's resources, derived from their names (known before they exist)."""

    ctx: Context

    def _arn(self, service: str, resource: str, region: bool = True, account: bool = True) -> str:
        aws = self.ctx.aws
        return (
            f"arn:{aws.partition}:{service}:{aws.region if region else ''}:"
            f"{aws.account if account else ''}:{resource}"
        )

    @property
    def names(self) -> Any:
        return self.ctx.names

    def bucket(self, name: str, path: str = "") -> str:
        return self._arn("s3", name + path, region=False, account=False)

    def log_group(self, name: str) -> str:
        return self._arn("logs", f"log-group:{name}:*")

    def parameter(self, name: str) -> str:
        return self._arn("ssm", f"parameter{name}")

    def role(self, purpose: str) -> str:
        return self._arn("iam", f"role{self.names.role_path}{self.names.role(purpose)}", False)

    @property
    def table(self) -> str:
        return self._arn("dynamodb", f"table/{self.names.predictions_table}")

    @property
    def endpoint(self) -> str:
        return self._arn("sagemaker", f"endpoint/{self.names.endpoint.lower()}")

    @property
    def stream(self) -> str:
        return self._arn("kinesis", f"stream/{self.names.stream}")

    @property
    def stream_dlq(self) -> str:
        return self._arn("sqs", self.names.stream_dlq)

    @property
    def topic(self) -> str:
        return self._arn("sns", self.names.alert_topic)

    @property
    def state_machine(self) -> str:
        return self._arn("states", f"stateMachine:{self.names.state_machine}")

    @property
    def job_queue(self) -> str:
        return self._arn("batch", f"job-queue/{self.names.job_queue}")

    @property
    def job_definition(self) -> str:
        return self._arn("batch", f"job-definition/{self.names.job_definition}")

    def ecr_repository(self, image: str) -> str:
        """The repository ARN of an image URI; an image without a registry is this account's."""
        match = re.match(r"^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com[^/]*/([^:@]+)", image)
        aws = self.ctx.aws
        if match:
            account, region, repo = match.groups()
            return f"arn:{aws.partition}:ecr:{region}:{account}:repository/{repo}"
        return self._arn("ecr", f"repository/{re.split(r'[:@]', image)[0]}")


def _params(arns: Arns) -> Statement:
    names = arns.names
    return allow(
        "ReadModelRegistry",
        ["ssm:GetParameter", "ssm:GetParameters"],
        [arns.parameter(names.active_version_param), arns.parameter(names.deployment_param)],
    )


def _logs(sid: str, group: str, arns: Arns) -> Statement:
    return allow(sid, ["logs:CreateLogStream", "logs:PutLogEvents"], [arns.log_group(group)])


def _lambda_common(arns: Arns, purpose: str, key_arn: Any) -> list[Statement]:
    return [
        _logs("WriteOwnLogs", arns.names.function_log_group(purpose), arns),
        _params(arns),
        allow("InvokeEndpoint", ["sagemaker:InvokeEndpoint"], [arns.endpoint]),
        allow("UseKey", ["kms:Decrypt", "kms:GenerateDataKey"], [key_arn]),
        # X-Ray trace ingestion has no resource-level permissions.
        allow("Tracing", ["xray:PutTraceSegments", "xray:PutTelemetryRecords"], "*"),
        # Lambda manages its VPC network interfaces; EC2 offers no resource-level
        # permissions for DescribeNetworkInterfaces, and Lambda needs all three together.
        allow(
            "VpcNetworkInterfaces",
            [
                "ec2:CreateNetworkInterface",
                "ec2:DeleteNetworkInterface",
                "ec2:DescribeNetworkInterfaces",
                "ec2:AssignPrivateIpAddresses",
                "ec2:UnassignPrivateIpAddresses",
            ],
            "*",
        ),
    ]


def _key_for(key_arn: Any, context_key: str, arn: str) -> Statement:
    """Use of the key for one resource's data only, by the encryption context its service
    sets (e.g. `aws:states:stateMachineArn`)."""
    sid = "KeyFor" + "".join(p[:1].upper() + p[1:] for p in context_key.split(":")[1:2])
    return allow(
        sid,
        ["kms:Decrypt", "kms:GenerateDataKey"],
        [key_arn],
        Condition={"StringEquals": {f"kms:EncryptionContext:{context_key}": arn}},
    )


def _ecr_pull(arns: Arns, *images: str) -> list[Statement]:
    return [
        # GetAuthorizationToken is account-wide: it has no resource-level permission.
        allow("EcrLogin", ["ecr:GetAuthorizationToken"], "*"),
        allow(
            "PullImage",
            ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            sorted({arns.ecr_repository(image) for image in images}),
        ),
    ]


def role_definitions(ctx: Context, key_arn: Any) -> dict[str, tuple[str, list[Statement]]]:
    """purpose → (service principal, inline policy statements)."""
    arns, names, spec = Arns(ctx), ctx.names, ctx.spec
    models, data = names.model_bucket, names.data_bucket
    return {
        "preprocess": (
            "lambda.amazonaws.com",
            [
                *_lambda_common(arns, "preprocess", key_arn),
                allow("WritePredictions", ["dynamodb:PutItem"], [arns.table]),
            ],
        ),
        "stream-processor": (
            "lambda.amazonaws.com",
            [
                *_lambda_common(arns, "stream-processor", key_arn),
                allow(
                    "WritePredictions",
                    ["dynamodb:BatchWriteItem", "dynamodb:PutItem"],
                    [arns.table],
                ),
                allow(
                    "ReadStream",
                    [
                        "kinesis:DescribeStream",
                        "kinesis:DescribeStreamSummary",
                        "kinesis:GetRecords",
                        "kinesis:GetShardIterator",
                        "kinesis:ListShards",
                    ],
                    [arns.stream],
                ),
                allow("KeepFailedRecords", ["sqs:SendMessage"], [arns.stream_dlq]),
            ],
        ),
        "sagemaker": (
            "sagemaker.amazonaws.com",
            [
                allow("ReadModels", ["s3:GetObject"], [arns.bucket(models, "/models/*")]),
                allow("CaptureData", ["s3:PutObject"], [arns.bucket(models, "/data-capture/*")]),
                allow("UseKey", ["kms:Decrypt", "kms:GenerateDataKey"], [key_arn]),
                # Every declared model version's image (a version may name its own).
                *_ecr_pull(
                    arns,
                    *(
                        images.model_image(spec.models, v, ctx.aws.region)
                        for v in spec.models.versions
                    ),
                ),
                allow(
                    "EndpointLogs",
                    ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                    [arns.log_group(f"/aws/sagemaker/Endpoints/{names.endpoint}")],
                ),
                # The models run in the VPC: SageMaker manages their network interfaces
                # (https://docs.aws.amazon.com/sagemaker/latest/dg/sagemaker-roles.html,
                # CreateModel API: execution role permissions); EC2 offers no resource-level
                # permission for the Describe calls.
                allow(
                    "VpcNetworkInterfaces",
                    [
                        "ec2:CreateNetworkInterface",
                        "ec2:CreateNetworkInterfacePermission",
                        "ec2:DeleteNetworkInterface",
                        "ec2:DeleteNetworkInterfacePermission",
                        "ec2:DescribeDhcpOptions",
                        "ec2:DescribeNetworkInterfaces",
                        "ec2:DescribeSecurityGroups",
                        "ec2:DescribeSubnets",
                        "ec2:DescribeVpcs",
                    ],
                    "*",
                ),
                # PutMetricData has no resource-level permission; the namespace is pinned.
                allow(
                    "EndpointMetrics",
                    ["cloudwatch:PutMetricData"],
                    "*",
                    Condition={"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}},
                ),
            ],
        ),
        "batch-job": (
            "ecs-tasks.amazonaws.com",
            [
                allow("ListData", ["s3:ListBucket"], [arns.bucket(data)]),
                allow("ReadInput", ["s3:GetObject"], [arns.bucket(data, "/*")]),
                allow(
                    "WriteResults",
                    ["s3:PutObject"],
                    [
                        arns.bucket(data, "/predictions/*"),
                        arns.bucket(data, "/errors/*"),
                        arns.bucket(data, "/runs/*"),
                    ],
                ),
                allow("WritePredictions", ["dynamodb:BatchWriteItem"], [arns.table]),
                allow("InvokeEndpoint", ["sagemaker:InvokeEndpoint"], [arns.endpoint]),
                _params(arns),
                allow("UseKey", ["kms:Decrypt", "kms:GenerateDataKey"], [key_arn]),
            ],
        ),
        "batch-execution": (
            "ecs-tasks.amazonaws.com",
            [
                *_ecr_pull(arns, ecr.image_uri(ctx, spec.batch.image)),
                _logs("JobLogs", names.batch_log_group, arns),
            ],
        ),
        "stepfunctions": (
            "states.amazonaws.com",
            [
                # Any revision of the pipeline's job definition, which the state machine names
                # with its revision: a policy naming `job-definition/<name>` does not match a
                # request with a revision, nor `<name>:*` one without. See "Accounting for job
                # definition revisions", https://docs.aws.amazon.com/batch/latest/userguide/
                # iam-example-restrict-job-submission.html
                allow(
                    "SubmitJobs", ["batch:SubmitJob"], [arns.job_queue, arns.job_definition + ":*"]
                ),
                allow("FollowJobs", ["batch:TerminateJob"], [arns._arn("batch", "job/*")]),
                # DescribeJobs has no resource-level permission.
                allow("DescribeJobs", ["batch:DescribeJobs"], "*"),
                allow(
                    "SyncJobEvents",
                    ["events:DescribeRule", "events:PutRule", "events:PutTargets"],
                    [arns._arn("events", "rule/StepFunctionsGetEventsForBatchJobsRule")],
                ),
                allow("Alert", ["sns:Publish"], [arns.topic]),
                # The key, only for the state machine's own data (definition, history:
                # https://docs.aws.amazon.com/step-functions/latest/dg/encryption-at-rest.html)
                # and for the messages of the encrypted alert topic.
                _key_for(key_arn, "aws:states:stateMachineArn", arns.state_machine),
                _key_for(key_arn, "aws:sns:topicArn", arns.topic),
                # Log delivery and X-Ray APIs have no resource-level permissions.
                allow(
                    "WorkflowLogs",
                    [
                        "logs:CreateLogDelivery",
                        "logs:DeleteLogDelivery",
                        "logs:DescribeLogGroups",
                        "logs:DescribeResourcePolicies",
                        "logs:GetLogDelivery",
                        "logs:ListLogDeliveries",
                        "logs:PutResourcePolicy",
                        "logs:UpdateLogDelivery",
                    ],
                    "*",
                ),
                allow(
                    "Tracing",
                    [
                        "xray:GetSamplingRules",
                        "xray:GetSamplingTargets",
                        "xray:PutTelemetryRecords",
                        "xray:PutTraceSegments",
                    ],
                    "*",
                ),
            ],
        ),
        # The account-wide role API Gateway writes execution logs with (AWS's
        # AmazonAPIGatewayPushToCloudWatchLogs, scoped to the groups API Gateway writes).
        "apigateway-logs": (
            "apigateway.amazonaws.com",
            [
                allow(
                    "ExecutionLogs",
                    [
                        "logs:CreateLogGroup",
                        "logs:CreateLogStream",
                        "logs:DescribeLogStreams",
                        "logs:FilterLogEvents",
                        "logs:GetLogEvents",
                        "logs:PutLogEvents",
                    ],
                    [
                        arns._arn("logs", "log-group:API-Gateway-Execution-Logs_*"),
                        arns._arn("logs", "log-group:/aws/apigateway/*"),
                    ],
                ),
                # DescribeLogGroups has no resource-level permission.
                allow("FindLogGroups", ["logs:DescribeLogGroups"], "*"),
            ],
        ),
        "flow-logs": (
            "vpc-flow-logs.amazonaws.com",
            [
                allow(
                    "DeliverFlowLogs",
                    ["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
                    [arns.log_group(names.flow_log_group)],
                ),
                # DescribeLogGroups has no resource-level permission.
                allow("FindLogGroup", ["logs:DescribeLogGroups"], "*"),
            ],
        ),
        "events": (
            "events.amazonaws.com",
            [
                allow("StartWorkflow", ["states:StartExecution"], [arns.state_machine]),
                # The execution input is encrypted with the state machine's key, in the
                # caller's name (https://docs.aws.amazon.com/step-functions/latest/dg/
                # encryption-at-rest.html).
                _key_for(key_arn, "aws:states:stateMachineArn", arns.state_machine),
            ],
        ),
        "glue-crawler": (
            "glue.amazonaws.com",
            [
                allow(
                    "ListPredictions",
                    ["s3:ListBucket"],
                    [arns.bucket(data)],
                    Condition={"StringLike": {"s3:prefix": ["predictions", "predictions/*"]}},
                ),
                allow("ReadPredictions", ["s3:GetObject"], [arns.bucket(data, "/predictions/*")]),
                *(
                    [allow("ReadTable", ["dynamodb:DescribeTable", "dynamodb:Scan"], [arns.table])]
                    if spec.analytics.crawl_dynamodb
                    else []
                ),
                allow("UseKey", ["kms:Decrypt"], [key_arn]),
                allow(
                    "Catalog",
                    [
                        "glue:BatchCreatePartition",
                        "glue:BatchGetPartition",
                        "glue:CreatePartition",
                        "glue:CreateTable",
                        "glue:GetDatabase",
                        "glue:GetPartition",
                        "glue:GetPartitions",
                        "glue:GetTable",
                        "glue:GetTables",
                        "glue:UpdatePartition",
                        "glue:UpdateTable",
                    ],
                    [
                        arns._arn("glue", "catalog"),
                        arns._arn("glue", f"database/{names.glue_database}"),
                        arns._arn("glue", f"table/{names.glue_database}/*"),
                    ],
                ),
                allow(
                    "CrawlerLogs",
                    ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                    [arns.log_group("/aws-glue/crawlers")],
                ),
            ],
        ),
    }


def source_conditions(ctx: Context, purpose: str) -> dict[str, Any] | None:
    """The confused-deputy condition of a role's trust policy: the source keys the service
    that assumes the role documents setting (`aws:SourceAccount`, and `aws:SourceArn` where
    it names the resource acting), or None where the service documents none."""
    aws, arns = ctx.aws, Arns(ctx)
    account = {"StringEquals": {"aws:SourceAccount": aws.account}}

    def source_arn(arn: str) -> dict[str, Any]:
        return {**account, "ArnLike": {"aws:SourceArn": arn}}

    match purpose:
        case "batch-job":
            # ECS sets both for task roles, and only an account-wide ARN (no cluster):
            # https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-iam-roles.html
            return source_arn(arns._arn("ecs", "*"))
        case "batch-execution" | "apigateway-logs":
            # Neither the task execution role
            # (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task_execution_IAM_role.html)
            # nor API Gateway's account-wide CloudWatch Logs role
            # (https://docs.aws.amazon.com/apigateway/latest/developerguide/set-up-logging.html)
            # documents a source key: a condition on one would refuse the service itself.
            return None
        case "stepfunctions":
            # https://docs.aws.amazon.com/step-functions/latest/dg/procedure-create-iam-role.html
            return source_arn(arns.state_machine)
        case "events":
            # https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-resource-based.html
            return source_arn(arns._arn("events", f"rule/{ctx.names.schedule_rule}"))
        case "flow-logs":
            # https://docs.aws.amazon.com/vpc/latest/userguide/flow-logs-iam-role.html
            return source_arn(arns._arn("ec2", "vpc-flow-log/*"))
        case _:
            # Lambda, SageMaker and Glue: the account only; their guides give no source ARN
            # form for the execution roles they assume.
            return account


def trust(ctx: Context, purpose: str, service: str) -> dict[str, Any]:
    condition = source_conditions(ctx, purpose)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": service},
                "Action": "sts:AssumeRole",
                **({"Condition": condition} if condition else {}),
            }
        ],
    }


class Role(Resource):
    kind = "iam"
    replace_on = ("Path",)
    exact = ("Tags", "Policies")

    def __init__(self, ctx: Context, purpose: str) -> None:
        super().__init__(ctx, purpose, ctx.names.role(purpose), depends_on=(KEY,))
        self.purpose = purpose

    def read(self) -> Observed | None:
        iam = self.client("iam")
        try:
            role = iam.get_role(RoleName=self.physical)["Role"]
        except Exception as exc:
            if is_not_found(exc):
                return None
            raise
        names = iam.list_role_policies(RoleName=self.physical)["PolicyNames"]
        policies = {
            n: policy(iam.get_role_policy(RoleName=self.physical, PolicyName=n)["PolicyDocument"])
            for n in names
        }
        attached = iam.list_attached_role_policies(RoleName=self.physical)["AttachedPolicies"]
        tags = tags_from_list(role.get("Tags"))
        state = {
            "Path": role["Path"],
            "Description": role.get("Description", ""),
            "AssumeRolePolicy": policy(role["AssumeRolePolicyDocument"]),
            "Policies": policies,
            "ManagedPolicies": sorted(p["PolicyArn"] for p in attached),
            "Tags": tags,
        }
        return Observed(state, {"name": self.physical, "arn": role["Arn"]}, self.ctx.owns(tags))

    def desired(self, refs: Refs) -> dict[str, Any]:
        service, statements = role_definitions(self.ctx, refs(KEY, "arn"))[self.purpose]
        return {
            "Path": self.ctx.names.role_path,
            "Description": f"mlpipe {self.ctx.names.pipeline_id}: {self.purpose}",
            "AssumeRolePolicy": policy(trust(self.ctx, self.purpose, service)),
            "Policies": {"least-privilege": policy({"Statement": statements})},
            "ManagedPolicies": [],
            "Tags": self.tags,
        }

    def create(self, desired: dict[str, Any]) -> Outputs:
        iam = self.client("iam")
        role = iam.create_role(
            RoleName=self.physical,
            Path=desired["Path"],
            Description=desired["Description"],
            AssumeRolePolicyDocument=json.dumps(desired["AssumeRolePolicy"]),
            Tags=tags_to_list(desired["Tags"]),
        )["Role"]
        for name, document in desired["Policies"].items():
            iam.put_role_policy(
                RoleName=self.physical, PolicyName=name, PolicyDocument=json.dumps(document)
            )
        return {"name": self.physical, "arn": role["Arn"]}

    def update(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> Outputs:
        iam, name, state = self.client("iam"), self.physical, observed.state
        if changes.touches("Description"):
            iam.update_role(RoleName=name, Description=desired["Description"])
        if changes.touches("AssumeRolePolicy"):
            iam.update_assume_role_policy(
                RoleName=name, PolicyDocument=json.dumps(desired["AssumeRolePolicy"])
            )
        for policy_name, document in desired["Policies"].items():
            if state["Policies"].get(policy_name) != document:
                iam.put_role_policy(
                    RoleName=name, PolicyName=policy_name, PolicyDocument=json.dumps(document)
                )
        for policy_name in set(state["Policies"]) - set(desired["Policies"]):
            iam.delete_role_policy(RoleName=name, PolicyName=policy_name)
        for arn in set(state["ManagedPolicies"]) - set(desired["ManagedPolicies"]):
            iam.detach_role_policy(RoleName=name, PolicyArn=arn)
        if changes.touches("Tags"):
            sync_tags(
                state["Tags"],
                desired["Tags"],
                lambda t: iam.tag_role(RoleName=name, Tags=tags_to_list(t)),
                lambda keys: iam.untag_role(RoleName=name, TagKeys=keys),
            )
        return observed.outputs

    def delete(self, observed: Observed) -> None:
        iam, name = self.client("iam"), self.physical
        for policy_name in observed.state["Policies"]:
            iam.delete_role_policy(RoleName=name, PolicyName=policy_name)
        for arn in observed.state["ManagedPolicies"]:
            iam.detach_role_policy(RoleName=name, PolicyArn=arn)
        iam.delete_role(RoleName=name)


ROLES = (
    "preprocess",
    "stream-processor",
    "sagemaker",
    "batch-job",
    "batch-execution",
    "stepfunctions",
    "events",
    "glue-crawler",
    "apigateway-logs",
    "flow-logs",
)


def role_key(purpose: str) -> str:
    return f"{Role.kind}:{purpose}"


def resources(ctx: Context) -> list[Resource]:
    return [Role(ctx, purpose) for purpose in ROLES]
