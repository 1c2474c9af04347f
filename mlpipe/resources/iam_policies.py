"""The IAM policy documents of the pipeline's roles, as data: for each role the service that
assumes it, its trust policy's conditions and its inline statements, scoped to ARNs.

`*` appears as a resource only for actions AWS offers no resource-level permission for, each
marked where it is written.
"""

from __future__ import annotations

from typing import Any

from mlpipe.core import images
from mlpipe.core.context import Context
from mlpipe.naming import Arns

Statement = dict[str, Any]


def allow(sid: str, actions: list[str], resources: list[str] | str, **extra: Any) -> Statement:
    return {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources, **extra}


def _params(arns: Arns) -> Statement:
    names = arns.names
    return allow(
        "ReadModelRegistry",
        ["ssm:GetParameter", "ssm:GetParameters"],
        [arns.parameter(names.active_version_param), arns.parameter(names.deployment_param)],
    )


def _logs(sid: str, group: str, arns: Arns) -> Statement:
    return allow(sid, ["logs:CreateLogStream", "logs:PutLogEvents"], [arns.log_group(group)])


def _lambda_common(arns: Arns, purpose: str, key_arn: str) -> list[Statement]:
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


def _key_for(key_arn: str, context_key: str, arn: str) -> Statement:
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


def role_definitions(ctx: Context, key_arn: str) -> dict[str, tuple[str, list[Statement]]]:
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
                *_ecr_pull(arns, arns.image(spec.batch.image)),
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
                allow("FollowJobs", ["batch:TerminateJob"], [arns.arn("batch", "job/*")]),
                # DescribeJobs has no resource-level permission.
                allow("DescribeJobs", ["batch:DescribeJobs"], "*"),
                allow(
                    "SyncJobEvents",
                    ["events:DescribeRule", "events:PutRule", "events:PutTargets"],
                    [arns.arn("events", "rule/StepFunctionsGetEventsForBatchJobsRule")],
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
                        arns.arn("logs", "log-group:API-Gateway-Execution-Logs_*"),
                        arns.arn("logs", "log-group:/aws/apigateway/*"),
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
                        arns.arn("glue", "catalog"),
                        arns.arn("glue", f"database/{names.glue_database}"),
                        arns.arn("glue", f"table/{names.glue_database}/*"),
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
            return source_arn(arns.arn("ecs", "*"))
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
            return source_arn(arns.arn("events", f"rule/{ctx.names.schedule_rule}"))
        case "flow-logs":
            # https://docs.aws.amazon.com/vpc/latest/userguide/flow-logs-iam-role.html
            return source_arn(arns.arn("ec2", "vpc-flow-log/*"))
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
