"""The core's AWS idioms against moto: not-found per service, tags per service, waits."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from mlpipe.core.diff import RUN_TAG
from mlpipe.core.errors import MlpipeError
from mlpipe.core.find import find, forget, not_found
from mlpipe.core.tagging import TAGGING, read_tags, sync_tags
from mlpipe.core.wait import Pending, TimedOut, poll, wait_for
from tests.fake_time import FakeTime

REGION = "us-east-1"


@pytest.fixture
def aws(fake_credentials: None) -> Iterator[Callable[[str], Any]]:
    with mock_aws():
        yield lambda service: boto3.client(service, region_name=REGION)


MISSING = [
    ("iam", "get_role", {"RoleName": "nope"}),
    ("s3", "head_bucket", {"Bucket": "nope-bucket"}),
    ("ssm", "get_parameter", {"Name": "/nope"}),
    ("kms", "describe_key", {"KeyId": "alias/nope"}),
    ("dynamodb", "describe_table", {"TableName": "nope"}),
    ("lambda", "get_function", {"FunctionName": "nope"}),
    ("kinesis", "describe_stream_summary", {"StreamName": "nope"}),
    ("sqs", "get_queue_url", {"QueueName": "nope"}),
    ("ec2", "describe_vpcs", {"VpcIds": ["vpc-12345678"]}),
    ("sagemaker", "describe_endpoint", {"EndpointName": "nope"}),
    ("logs", "delete_log_group", {"logGroupName": "nope"}),
    ("ecr", "describe_repositories", {"repositoryNames": ["nope"]}),
    ("glue", "get_database", {"Name": "nope"}),
    ("events", "describe_rule", {"Name": "nope"}),
]


@pytest.mark.parametrize(("service", "operation", "params"), MISSING, ids=[m[0] for m in MISSING])
def test_a_read_of_nothing_is_none_in_every_service(
    aws: Callable[[str], Any], service: str, operation: str, params: dict[str, Any]
) -> None:
    assert find(aws(service), operation, **params) is None
    forget(aws(service), operation, **params)  # a delete of what is gone is done


def test_not_found_is_the_service_s_own_code() -> None:
    def error(code: str, message: str = "") -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": message}}, "Op")

    assert not_found("iam", error("NoSuchEntity"))
    assert not not_found("iam", error("ResourceNotFoundException"))  # another service's
    assert not_found("sagemaker", error("ValidationException", "Could not find model m"))
    assert not not_found("sagemaker", error("ValidationException", "bad name"))


def _make(service: str, client: Any) -> str:
    """A resource of `service` and the name its tagging API takes."""
    if service == "iam":
        client.create_role(RoleName="r", AssumeRolePolicyDocument="{}")
        return "r"
    if service == "s3":
        client.create_bucket(Bucket="tagged-bucket")
        return "tagged-bucket"
    if service == "kms":
        return str(client.create_key()["KeyMetadata"]["KeyId"])
    if service == "ec2":
        return str(client.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"])
    if service == "ssm":
        client.put_parameter(Name="/p", Value="v", Type="String")
        return "/p"
    if service == "sqs":
        return str(client.create_queue(QueueName="q")["QueueUrl"])
    if service == "sns":
        return str(client.create_topic(Name="t")["TopicArn"])
    if service == "kinesis":
        client.create_stream(StreamName="s", ShardCount=1)
        return "s"
    if service == "logs":
        client.create_log_group(logGroupName="g")
        return "arn:aws:logs:us-east-1:123456789012:log-group:g"
    if service == "ecr":
        return str(client.create_repository(repositoryName="repo")["repository"]["repositoryArn"])
    if service == "dynamodb":
        return str(
            client.create_table(
                TableName="t",
                KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )["TableDescription"]["TableArn"]
        )
    if service == "cloudwatch":
        client.put_metric_alarm(
            AlarmName="a",
            MetricName="Errors",
            Namespace="AWS/Lambda",
            Statistic="Sum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=1.0,
            ComparisonOperator="GreaterThanThreshold",
        )
        return str(client.describe_alarms(AlarmNames=["a"])["MetricAlarms"][0]["AlarmArn"])
    if service == "glue":
        client.create_database(DatabaseInput={"Name": "db"})
        return "arn:aws:glue:us-east-1:123456789012:database/db"
    if service == "athena":
        # moto knows a workgroup's ARN only once it has tags.
        client.create_work_group(Name="wg", Tags=[{"Key": "made", "Value": "1"}])
        return "arn:aws:athena:us-east-1:123456789012:workgroup/wg"
    raise AssertionError(service)


TAGGED = ["iam", "s3", "kms", "ec2", "ssm", "sqs", "sns", "kinesis", "logs", "ecr", "dynamodb"]
# API Gateway: moto tags only stages without mlpipe's extension (tests/resources/test_api.py).
TAGGED += ["cloudwatch", "glue", "athena"]


@pytest.mark.parametrize("service", TAGGED)
def test_tags_sync_to_exactly_the_desired_set(aws: Callable[[str], Any], service: str) -> None:
    assert service in TAGGING
    client = aws(service)
    name = _make(service, client)
    sync_tags(client, name, read_tags(client, name), {"a": "1", "b": "2", RUN_TAG: "run-1"})
    assert read_tags(client, name) == {"a": "1", "b": "2", RUN_TAG: "run-1"}
    sync_tags(client, name, read_tags(client, name), {"a": "9", "c": "3"})
    # b removed, a changed, c added; the run tag stays (set once at creation).
    assert read_tags(client, name) == {"a": "9", "c": "3", RUN_TAG: "run-1"}


def test_poll_backs_off_on_the_injected_clock_and_times_out() -> None:
    time = FakeTime()
    calls: list[float] = []

    def attempt() -> Pending:
        calls.append(time.now)
        return Pending(len(calls), "not yet")

    with pytest.raises(TimedOut, match="not yet after 10s") as raised:
        poll(attempt, timeout=10, clock=time.clock())
    assert time.sleeps == [0.5, 1.0, 2.0, 4.0, 2.5]  # doubling, cut at the deadline
    assert raised.value.last is not None and raised.value.last.value == len(calls)


def test_wait_for_ends_on_a_target_and_fails_on_an_unexpected_state() -> None:
    time = FakeTime()
    states = iter(["Creating", "Creating", "InService"])
    seen: list[str] = []
    value = wait_for(
        lambda: ("endpoint", next(states)),
        pending={"Creating"},
        target={"InService"},
        timeout=60,
        clock=time.clock(),
        what="endpoint e",
        progress=lambda why, _elapsed: seen.append(why),
    )
    assert value == "endpoint" and seen == ["endpoint e still Creating"] * 2
    with pytest.raises(MlpipeError, match="endpoint e is Failed, expected InService"):
        wait_for(
            lambda: ("endpoint", "Failed"),
            pending={"Creating"},
            target={"InService"},
            timeout=60,
            clock=time.clock(),
            what="endpoint e",
        )


# The services the batch workflow is tagged through: Step Functions (a key/value list under
# lower-case names), EventBridge and Batch (a map).
WORKFLOW: dict[str, Callable[[Any], str]] = {
    "stepfunctions": lambda sfn: sfn.create_state_machine(
        name="m",
        definition='{"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}',
        roleArn="arn:aws:iam::123456789012:role/r",
    )["stateMachineArn"],
    "events": lambda events: events.put_rule(Name="r", ScheduleExpression="rate(1 hour)")[
        "RuleArn"
    ],
    "batch": lambda batch: batch.register_job_definition(
        jobDefinitionName="j",
        type="container",
        containerProperties={"image": "i", "vcpus": 1, "memory": 512},
    )["jobDefinitionArn"],
}


@pytest.mark.parametrize("service", sorted(WORKFLOW))
def test_the_workflow_services_tags_sync_too(aws: Callable[[str], Any], service: str) -> None:
    client = aws(service)
    name = WORKFLOW[service](client)
    sync_tags(client, name, read_tags(client, name), {"a": "1", "b": "2", RUN_TAG: "run-1"})
    assert read_tags(client, name) == {"a": "1", "b": "2", RUN_TAG: "run-1"}
    sync_tags(client, name, read_tags(client, name), {"a": "9", "c": "3"})
    assert read_tags(client, name) == {"a": "9", "c": "3", RUN_TAG: "run-1"}


def test_tag_sync_makes_the_fewest_calls(aws: Callable[[str], Any]) -> None:
    sqs = aws("sqs")
    url = _make("sqs", sqs)
    sync_tags(sqs, url, {}, {"keep": "1", "change": "old", "stale": "x"})
    live = read_tags(sqs, url)
    writes: list[tuple[str, object]] = []

    def record(model: Any, params: dict[str, Any], **_: Any) -> None:
        writes.append((model.name, params.get("Tags") or params.get("TagKeys")))

    sqs.meta.events.register("before-parameter-build.sqs.*", record)
    wanted = {"keep": "1", "change": "new", "add": "y"}
    sync_tags(sqs, url, live, wanted)
    assert writes == [("UntagQueue", ["stale"]), ("TagQueue", {"change": "new", "add": "y"})]
    writes.clear()
    sync_tags(sqs, url, wanted, wanted)
    assert writes == []
