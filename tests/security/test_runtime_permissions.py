"""Least privilege that is sufficient: every AWS call a component's code or its service makes at
run time, with the resource ARN and condition keys AWS evaluates, is checked against the live
identity, trust, resource, key and VPC endpoint policies read back after a full apply.

Every call must be allowed; a policy narrowed by one action must refuse a call.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import boto3
import pytest

from mlpipe.core import images
from mlpipe.core.context import Context
from mlpipe.local import moto_ext
from mlpipe.naming import Arns
from mlpipe.resources import build, iam, kms
from mlpipe.resources.api import API
from mlpipe.resources.artifacts import content_key
from mlpipe.resources.batch import JOB_DEFINITION, QUEUE
from mlpipe.resources.network import VPC
from tests.conftest import account
from tests.security.iam_eval import Access, Principal, Request
from tests.support import four_step

REGION = "us-east-1"
ACCOUNT = "123456789012"
# An account of AWS's own (ECR presigns image-layer URLs in one).
AWS_OWNED = "999999999999"
TLS = {"aws:SecureTransport": "true"}


@dataclass(frozen=True)
class Call:
    """One request at run time: who sends it (a role purpose, a service principal, or a URL
    an AWS account presigned), what on which resource, its condition keys, and the VPC
    endpoint it goes through, if any."""

    who: str
    action: str
    resource: str
    context: dict[str, str] = field(default_factory=dict)
    endpoint: str | None = None
    resource_account: str = ACCOUNT

    def __str__(self) -> str:
        via = f" via {self.endpoint}" if self.endpoint else ""
        return f"{self.who}: {self.action} on {self.resource}{via}"


@dataclass
class Live:
    """The policies read back from the embedded AWS after the apply."""

    ctx: Context
    outputs: dict[str, Any]
    roles: dict[str, dict[str, Any]]
    endpoints: dict[str, dict[str, Any]]
    key_policy: dict[str, Any]
    key_arn: str
    resource_policies: dict[str, dict[str, Any]]


def _read(ctx: Context, outputs: dict[str, Any]) -> Live:
    client = lambda service: boto3.client(service, region_name=REGION)  # noqa: E731
    names = ctx.names
    roles = {}
    for purpose in iam.ROLES:
        role = client("iam").get_role(RoleName=names.role(purpose))["Role"]
        documents = [
            client("iam").get_role_policy(RoleName=names.role(purpose), PolicyName=n)[
                "PolicyDocument"
            ]
            for n in client("iam").list_role_policies(RoleName=names.role(purpose))["PolicyNames"]
        ]
        roles[purpose] = {
            "arn": role["Arn"],
            "trust": role["AssumeRolePolicyDocument"],
            "policies": documents,
        }
    found = client("ec2").describe_vpc_endpoints(
        Filters=[{"Name": "vpc-id", "Values": [outputs[VPC]["id"]]}]
    )["VpcEndpoints"]
    endpoints = {
        e["ServiceName"].split(f"{REGION}.", 1)[1]: json.loads(e["PolicyDocument"]) for e in found
    }
    key_arn = outputs[kms.KEY]["arn"]
    key_policy = json.loads(
        client("kms").get_key_policy(KeyId=key_arn, PolicyName="default")["Policy"]
    )
    resources: dict[str, dict[str, Any]] = {}
    for bucket in (names.model_bucket, names.data_bucket, names.access_log_bucket):
        arn = f"arn:aws:s3:::{bucket}"
        resources[arn] = json.loads(client("s3").get_bucket_policy(Bucket=bucket)["Policy"])
    topic = Arns(ctx).topic
    resources[topic] = json.loads(
        client("sns").get_topic_attributes(TopicArn=topic)["Attributes"]["Policy"]
    )
    function = outputs["lambda:preprocess"]["arn"]
    resources[function] = json.loads(client("lambda").get_policy(FunctionName=function)["Policy"])
    queue_url = client("sqs").get_queue_url(QueueName=names.stream_dlq)["QueueUrl"]
    attributes = client("sqs").get_queue_attributes(QueueUrl=queue_url, AttributeNames=["Policy"])
    resources[Arns(ctx).stream_dlq] = json.loads(attributes["Attributes"]["Policy"])
    for role in roles.values():
        resources[role["arn"]] = role["trust"]
    return Live(ctx, outputs, roles, endpoints, key_policy, key_arn, resources)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """The default spec applied once to moto (second apply: no write, four_step checks it)."""

    def instant_endpoints(patch: pytest.MonkeyPatch, _ctx: Context) -> None:
        patch.setattr(moto_ext, "ENDPOINT_TRANSITION_SECONDS", 0.0)

    with account(tmp_path_factory.mktemp("home"), instant_endpoints) as ctx:
        outputs = four_step(ctx, build(ctx)).outputs
        yield _read(ctx, outputs)


def decide(live: Live, call: Call) -> tuple[bool, str]:
    if call.who.startswith("service:"):
        who = Principal(service=call.who.removeprefix("service:"))
        identity: tuple[dict[str, Any], ...] = ()
    elif call.who.startswith("presigned:"):
        # A URL an AWS-owned account presigned: its own policies are AWS's business.
        who = Principal(account=AWS_OWNED, arn=f"arn:aws:iam::{AWS_OWNED}:role/presigner")
        identity = ({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]},)
    else:
        role = live.roles[call.who]
        who = Principal(account=ACCOUNT, arn=role["arn"])
        identity = tuple(role["policies"])
    resource_policy = None
    for arn, document in live.resource_policies.items():
        if call.resource == arn or call.resource.startswith(f"{arn}/"):
            resource_policy = document
    is_key = call.resource == live.key_arn
    access = Access(
        identity=identity,
        resource=None if is_key else resource_policy,
        key_policy=live.key_policy if is_key else None,
        endpoint=live.endpoints[call.endpoint] if call.endpoint else None,
    )
    context = {"aws:ResourceAccount": call.resource_account, **TLS, **call.context}
    return access.allows(Request(call.action, call.resource, context), who)


def assume(live: Live, purpose: str, service: str, **context: str) -> Call:
    return Call(f"service:{service}", "sts:AssumeRole", live.roles[purpose]["arn"], context)


def calls(live: Live) -> dict[str, list[Call]]:
    """component → the calls its code and its service make at run time."""
    ctx, out = live.ctx, live.outputs
    names, arns, key = ctx.names, Arns(ctx), live.key_arn
    source = {"aws:SourceAccount": ACCOUNT}
    arn = lambda service, resource: f"arn:aws:{service}:{REGION}:{ACCOUNT}:{resource}"  # noqa: E731
    group = lambda name: arn("logs", f"log-group:{name}")  # noqa: E731
    stream = lambda name: arn("logs", f"log-group:{name}:log-stream:2026/11/30/abc")  # noqa: E731
    params = [arns.parameter(names.active_version_param), arns.parameter(names.deployment_param)]
    models, data = f"arn:aws:s3:::{names.model_bucket}", f"arn:aws:s3:::{names.data_bucket}"
    state_machine = out["states:batch-workflow"]["arn"]
    api_id, stage = out[API]["id"], ctx.spec.api.stage
    topic, table, endpoint = arns.topic, arns.table, arns.endpoint
    via_kms = lambda service: {"kms:ViaService": f"{service}.{REGION}.amazonaws.com"}  # noqa: E731

    def function(purpose: str) -> list[Call]:
        fn_arn = out[f"lambda:{purpose}"]["arn"]
        log_group = names.function_log_group(purpose)
        return [
            assume(live, purpose, "lambda.amazonaws.com", **source),
            *(
                Call(purpose, f"ec2:{a}", "*")
                for a in (
                    "CreateNetworkInterface",
                    "DescribeNetworkInterfaces",
                    "DeleteNetworkInterface",
                    "AssignPrivateIpAddresses",
                    "UnassignPrivateIpAddresses",
                )
            ),
            Call(purpose, "logs:CreateLogStream", stream(log_group)),
            Call(purpose, "logs:PutLogEvents", stream(log_group)),
            Call(purpose, "xray:PutTraceSegments", "*"),
            Call(purpose, "xray:PutTelemetryRecords", "*"),
            # Environment variables are encrypted with the pipeline key.
            Call(purpose, "kms:Decrypt", key, {"kms:EncryptionContext:LambdaFunctionName": fn_arn}),
            *(Call(purpose, "ssm:GetParameters", p, endpoint="ssm") for p in params),
            Call(purpose, "sagemaker:InvokeEndpoint", endpoint, endpoint="sagemaker.runtime"),
        ]

    revision = f"{out[JOB_DEFINITION]['arn']}:1"
    return {
        "preprocess": [
            *function("preprocess"),
            Call("preprocess", "dynamodb:PutItem", table, endpoint="dynamodb"),
            Call("preprocess", "kms:GenerateDataKey", key, via_kms("dynamodb")),
        ],
        "stream-processor": [
            *function("stream-processor"),
            Call("stream-processor", "dynamodb:BatchWriteItem", table, endpoint="dynamodb"),
            Call("stream-processor", "kms:GenerateDataKey", key, via_kms("dynamodb")),
        ],
        # Lambda's event source mapping reads the stream and keeps failed batches with the
        # function's role, from Lambda's own network.
        "event-source-mapping": [
            *(
                Call("stream-processor", f"kinesis:{a}", arns.stream)
                for a in (
                    "DescribeStream",
                    "DescribeStreamSummary",
                    "GetShardIterator",
                    "GetRecords",
                    "ListShards",
                )
            ),
            Call("stream-processor", "kms:Decrypt", key, via_kms("kinesis")),
            Call("stream-processor", "sqs:SendMessage", arns.stream_dlq),
            Call("stream-processor", "kms:GenerateDataKey", key, via_kms("sqs")),
        ],
        "batch-job": [
            assume(
                live,
                "batch-job",
                "ecs-tasks.amazonaws.com",
                **source,
                **{"aws:SourceArn": arn("ecs", "task/cluster/0123456789abcdef")},
            ),
            *(Call("batch-job", "ssm:GetParameter", p, endpoint="ssm") for p in params),
            Call(
                "batch-job",
                "s3:ListBucket",
                data,
                {"s3:prefix": ctx.spec.storage.data_bucket.raw_prefix},
                endpoint="s3",
            ),
            Call("batch-job", "s3:GetObject", f"{data}/raw/2026-11-30/part-0.jsonl", endpoint="s3"),
            Call("batch-job", "s3:GetObject", f"{data}/runs/run-1/run.json", endpoint="s3"),
            Call("batch-job", "s3:PutObject", f"{data}/runs/run-1/run.json", endpoint="s3"),
            Call(
                "batch-job",
                "s3:PutObject",
                f"{data}/predictions/run=run-1/shard=0/part-0.jsonl",
                endpoint="s3",
            ),
            Call(
                "batch-job",
                "s3:PutObject",
                f"{data}/errors/run=run-1/shard=0/x.jsonl",
                endpoint="s3",
            ),
            Call("batch-job", "kms:Decrypt", key, via_kms("s3")),
            Call("batch-job", "kms:GenerateDataKey", key, via_kms("s3")),
            Call("batch-job", "dynamodb:BatchWriteItem", table, endpoint="dynamodb"),
            Call("batch-job", "sagemaker:InvokeEndpoint", endpoint, endpoint="sagemaker.runtime"),
        ],
        "batch-execution": [
            assume(live, "batch-execution", "ecs-tasks.amazonaws.com"),
            Call("batch-execution", "ecr:GetAuthorizationToken", "*", endpoint="ecr.api"),
            *(
                Call(
                    "batch-execution",
                    f"ecr:{a}",
                    arns.ecr_repository(arns.image(ctx.spec.batch.image)),
                    endpoint="ecr.dkr",
                )
                for a in ("BatchCheckLayerAvailability", "BatchGetImage", "GetDownloadUrlForLayer")
            ),
            Call(
                "presigned:ecr",
                "s3:GetObject",
                f"arn:aws:s3:::prod-{REGION}-starport-layer-bucket/sha256:abc",
                endpoint="s3",
                resource_account=AWS_OWNED,
            ),
            Call(
                "batch-execution",
                "logs:CreateLogStream",
                stream(names.batch_log_group),
                endpoint="logs",
            ),
            Call(
                "batch-execution",
                "logs:PutLogEvents",
                stream(names.batch_log_group),
                endpoint="logs",
            ),
        ],
        "state-machine": [
            assume(
                live,
                "stepfunctions",
                "states.amazonaws.com",
                **source,
                **{"aws:SourceArn": state_machine},
            ),
            Call("stepfunctions", "batch:SubmitJob", out[QUEUE]["arn"]),
            Call("stepfunctions", "batch:SubmitJob", revision),
            Call("stepfunctions", "batch:DescribeJobs", "*"),
            Call("stepfunctions", "batch:TerminateJob", arn("batch", "job/0a1b2c3d")),
            *(
                Call(
                    "stepfunctions",
                    f"events:{a}",
                    arn("events", "rule/StepFunctionsGetEventsForBatchJobsRule"),
                )
                for a in ("DescribeRule", "PutRule", "PutTargets")
            ),
            Call("stepfunctions", "sns:Publish", topic),
            *(
                Call(
                    "stepfunctions",
                    f"kms:{a}",
                    key,
                    {"kms:EncryptionContext:aws:sns:topicArn": topic},
                )
                for a in ("Decrypt", "GenerateDataKey")
            ),
            *(
                Call(
                    "stepfunctions",
                    f"kms:{a}",
                    key,
                    {"kms:EncryptionContext:aws:states:stateMachineArn": state_machine},
                )
                for a in ("Decrypt", "GenerateDataKey")
            ),
            *(
                Call("stepfunctions", f"logs:{a}", "*")
                for a in (
                    "CreateLogDelivery",
                    "GetLogDelivery",
                    "DescribeLogGroups",
                    "DescribeResourcePolicies",
                    "PutResourcePolicy",
                )
            ),
            Call("stepfunctions", "xray:PutTraceSegments", "*"),
            Call("stepfunctions", "xray:GetSamplingRules", "*"),
        ],
        "schedule": [
            assume(
                live,
                "events",
                "events.amazonaws.com",
                **source,
                **{"aws:SourceArn": arn("events", f"rule/{names.schedule_rule}")},
            ),
            Call("events", "states:StartExecution", state_machine),
            Call(
                "events",
                "kms:GenerateDataKey",
                key,
                {"kms:EncryptionContext:aws:states:stateMachineArn": state_machine},
            ),
        ],
        "crawler": [
            assume(live, "glue-crawler", "glue.amazonaws.com", **source),
            Call("glue-crawler", "s3:ListBucket", data, {"s3:prefix": "predictions/"}),
            Call(
                "glue-crawler", "s3:GetObject", f"{data}/predictions/run=run-1/shard=0/part-0.jsonl"
            ),
            Call("glue-crawler", "kms:Decrypt", key, via_kms("s3")),
            Call("glue-crawler", "dynamodb:DescribeTable", table),
            Call("glue-crawler", "dynamodb:Scan", table),
            *(
                Call("glue-crawler", f"glue:{a}", resource)
                for a in (
                    "GetDatabase",
                    "GetTable",
                    "CreateTable",
                    "UpdateTable",
                    "BatchCreatePartition",
                    "GetPartitions",
                )
                for resource in (
                    arn("glue", "catalog"),
                    arn("glue", f"database/{names.glue_database}"),
                    arn("glue", f"table/{names.glue_database}/predictions"),
                )
            ),
            Call("glue-crawler", "logs:CreateLogStream", stream("/aws-glue/crawlers")),
            Call("glue-crawler", "logs:PutLogEvents", stream("/aws-glue/crawlers")),
        ],
        "sagemaker-models": [
            assume(live, "sagemaker", "sagemaker.amazonaws.com", **source),
            *(
                # Artifacts are stored by content: models/sha256/<digest>/model.tar.gz.
                Call("sagemaker", "s3:GetObject", f"{models}/{content_key(digest)}", endpoint="s3")
                for digest in ("0" * 64, "f" * 64)
            ),
            Call("sagemaker", "kms:Decrypt", key, via_kms("s3")),
            Call("sagemaker", "ecr:GetAuthorizationToken", "*"),
            *(
                Call("sagemaker", f"ecr:{a}", arns.ecr_repository(image))
                for image in {
                    images.model_image(ctx.spec.models, v, REGION) for v in ctx.spec.models.versions
                }
                for a in ("BatchCheckLayerAvailability", "BatchGetImage", "GetDownloadUrlForLayer")
            ),
            *(
                Call("sagemaker", f"ec2:{a}", "*")
                for a in (
                    "CreateNetworkInterface",
                    "CreateNetworkInterfacePermission",
                    "DeleteNetworkInterface",
                    "DeleteNetworkInterfacePermission",
                    "DescribeDhcpOptions",
                    "DescribeNetworkInterfaces",
                    "DescribeSecurityGroups",
                    "DescribeSubnets",
                    "DescribeVpcs",
                )
            ),
            Call(
                "sagemaker",
                "s3:PutObject",
                f"{models}/data-capture/{names.endpoint}/ModelA/2026/11/30/12/x.jsonl",
                endpoint="s3",
            ),
            Call("sagemaker", "kms:GenerateDataKey", key, via_kms("s3")),
            Call(
                "sagemaker",
                "logs:CreateLogStream",
                stream(f"/aws/sagemaker/Endpoints/{names.endpoint}"),
            ),
            Call(
                "sagemaker",
                "logs:PutLogEvents",
                stream(f"/aws/sagemaker/Endpoints/{names.endpoint}"),
            ),
            Call(
                "sagemaker",
                "cloudwatch:PutMetricData",
                "*",
                {"cloudwatch:namespace": "/aws/sagemaker/Endpoints"},
            ),
        ],
        "api-gateway-invoke": [
            Call(
                "service:apigateway.amazonaws.com",
                "lambda:InvokeFunction",
                out["lambda:preprocess"]["arn"],
                {
                    **source,
                    "aws:SourceArn": arn("execute-api", f"{api_id}/{stage}/POST/predict"),
                },
            ),
        ],
        "api-gateway-logging": [
            assume(live, "apigateway-logs", "apigateway.amazonaws.com"),
            Call("apigateway-logs", "logs:DescribeLogGroups", "*"),
            Call(
                "apigateway-logs",
                "logs:CreateLogGroup",
                group(f"API-Gateway-Execution-Logs_{api_id}/{stage}"),
            ),
            Call(
                "apigateway-logs",
                "logs:CreateLogStream",
                stream(f"API-Gateway-Execution-Logs_{api_id}/{stage}"),
            ),
            Call(
                "apigateway-logs",
                "logs:PutLogEvents",
                stream(f"API-Gateway-Execution-Logs_{api_id}/{stage}"),
            ),
        ],
        "alarms-to-topic": [
            Call(
                "service:cloudwatch.amazonaws.com",
                "sns:Publish",
                topic,
                {
                    **source,
                    "aws:SourceArn": arn("cloudwatch", f"alarm:{names.alarm('lambda-errors')}"),
                },
            ),
            *(
                Call("service:cloudwatch.amazonaws.com", f"kms:{a}", key, source)
                for a in ("GenerateDataKey", "Decrypt")
            ),
        ],
        "logs-with-the-key": [
            Call(
                f"service:logs.{REGION}.amazonaws.com",
                f"kms:{a}",
                key,
                {"kms:EncryptionContext:aws:logs:arn": group(g)},
            )
            for a in ("Encrypt", "Decrypt", "GenerateDataKey")
            for g in (
                names.function_log_group("preprocess"),
                names.function_log_group("stream-processor"),
                names.batch_log_group,
                names.workflow_log_group,
                names.flow_log_group,
            )
        ],
        "flow-logs": [
            assume(
                live,
                "flow-logs",
                "vpc-flow-logs.amazonaws.com",
                **source,
                **{"aws:SourceArn": arn("ec2", f"vpc-flow-log/{out['ec2:flow-log']['id']}")},
            ),
            Call("flow-logs", "logs:DescribeLogGroups", "*"),
            *(
                Call("flow-logs", f"logs:{a}", stream(names.flow_log_group))
                for a in ("CreateLogStream", "DescribeLogStreams", "PutLogEvents")
            ),
        ],
    }


COMPONENTS = [
    "preprocess",
    "stream-processor",
    "event-source-mapping",
    "batch-job",
    "batch-execution",
    "state-machine",
    "schedule",
    "crawler",
    "sagemaker-models",
    "api-gateway-invoke",
    "api-gateway-logging",
    "alarms-to-topic",
    "logs-with-the-key",
    "flow-logs",
]


def test_every_component_is_listed(live: Live) -> None:
    assert sorted(calls(live)) == sorted(COMPONENTS)


@pytest.mark.parametrize("component", COMPONENTS)
def test_every_runtime_call_is_allowed(live: Live, component: str) -> None:
    refused = []
    for call in calls(live)[component]:
        allowed, why = decide(live, call)
        if not allowed:
            refused.append(f"{call}: {why}")
    assert not refused, "\n".join(refused)


def narrowed(live: Live, purpose: str, action: str) -> Live:
    """The live policies with one action taken out of one role's identity policy."""
    role = live.roles[purpose]
    documents = []
    for document in role["policies"]:
        statements = []
        for statement in document["Statement"]:
            actions = [a for a in statement["Action"] if a != action]
            if actions:
                statements.append({**statement, "Action": actions})
        documents.append({**document, "Statement": statements})
    return replace(live, roles={**live.roles, purpose: {**role, "policies": documents}})


@pytest.mark.parametrize(
    ("component", "purpose", "action"),
    [
        ("preprocess", "preprocess", "dynamodb:PutItem"),
        ("stream-processor", "stream-processor", "sagemaker:InvokeEndpoint"),
        ("event-source-mapping", "stream-processor", "kinesis:GetRecords"),
        ("batch-job", "batch-job", "s3:PutObject"),
        ("batch-execution", "batch-execution", "ecr:BatchGetImage"),
        ("state-machine", "stepfunctions", "batch:SubmitJob"),
        ("schedule", "events", "states:StartExecution"),
        ("crawler", "glue-crawler", "glue:CreateTable"),
        ("sagemaker-models", "sagemaker", "ec2:CreateNetworkInterface"),
        ("api-gateway-logging", "apigateway-logs", "logs:PutLogEvents"),
        ("flow-logs", "flow-logs", "logs:PutLogEvents"),
    ],
)
def test_a_policy_narrowed_by_one_action_refuses_a_call(
    live: Live, component: str, purpose: str, action: str
) -> None:
    tighter = narrowed(live, purpose, action)
    refused = [c for c in calls(tighter)[component] if not decide(tighter, c)[0]]
    assert refused and all(c.action == action for c in refused), [str(c) for c in refused]


def test_calls_from_outside_the_account_are_refused_at_the_endpoints(live: Live) -> None:
    own = Call(
        "batch-job", "s3:GetObject", f"arn:aws:s3:::{live.ctx.names.data_bucket}/x", endpoint="s3"
    )
    assert decide(live, own)[0]
    foreign_bucket = replace(
        own, resource="arn:aws:s3:::someone-else/x", resource_account="210987654321"
    )
    assert decide(live, foreign_bucket) == (False, "the VPC endpoint policy does not allow it")


def test_a_service_without_the_source_conditions_cannot_assume_a_role(live: Live) -> None:
    other = {"aws:SourceAccount": "210987654321"}
    for purpose, service in (
        ("stepfunctions", "states.amazonaws.com"),
        ("glue-crawler", "glue.amazonaws.com"),
    ):
        assert not decide(live, assume(live, purpose, service, **other))[0]


def count(live: Live) -> dict[str, int]:
    return {component: len(found) for component, found in calls(live).items()}


def test_the_count_of_checked_calls(live: Live) -> None:
    counted = count(live)
    assert all(n > 0 for n in counted.values())
    assert sum(counted.values()) >= 100, counted


def test_the_workflow_roles_may_use_the_key_only_for_this_state_machine(live: Live) -> None:
    other = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:another"
    for purpose in ("stepfunctions", "events"):
        call = Call(
            purpose,
            "kms:GenerateDataKey",
            live.key_arn,
            {"kms:EncryptionContext:aws:states:stateMachineArn": other},
        )
        assert not decide(live, call)[0], purpose
