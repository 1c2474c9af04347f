"""The inference stream, the failure queue and the event source mapping on moto."""

from __future__ import annotations

import json

import pytest

from mlpipe.core.context import Context
from mlpipe.core.executor import Report
from mlpipe.core.plan import Action, plan_apply
from mlpipe.core.resource import Resource
from mlpipe.resources import kinesis, lambdas
from mlpipe.resources.iam import role_key
from mlpipe.resources.kinesis import MAPPING, QUEUE, STREAM
from mlpipe.resources.kms import KEY
from mlpipe.resources.lambdas import STREAM_PROCESSOR, function_key
from tests.resources.serving import (
    ACCOUNT,
    REGION,
    apply,
    client,
    destroy,
    foundation,
    needed,
    step_paths,
    with_spec,
)
from tests.support import Shared, build_once, converge, four_step


def stream_set(ctx: Context) -> list[Resource]:
    """The stream, the queue and the mapping, with what they use: the stream processor and the
    part of the foundation it runs on."""
    return needed(kinesis.resources(ctx), [*foundation(ctx), *lambdas.resources(ctx)])


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Shared[Report]:
    return build_once(tmp_path_factory.mktemp("built"), lambda ctx: converge(stream_set(ctx)))


@pytest.fixture
def applied(ctx: Context, built: Shared[Report]) -> Report:
    """The stack applied: a copy of the account one converge built for the module."""
    return built.restore()


def test_four_step(ctx: Context) -> None:
    """The idempotency check, once: the other tests start from `applied` (one converge)."""
    four_step(ctx, stream_set(ctx))


def mapping(ctx: Context) -> dict:
    found = client("lambda").list_event_source_mappings(
        EventSourceArn=f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{ctx.names.stream}"
    )["EventSourceMappings"]
    assert len(found) == 1
    return found[0]


def test_stream_has_two_shards_a_day_of_retention_and_the_pipeline_key(
    ctx: Context, applied: Report
) -> None:
    summary = client("kinesis").describe_stream_summary(StreamName=ctx.names.stream)[
        "StreamDescriptionSummary"
    ]
    assert summary["OpenShardCount"] == 2
    assert summary["RetentionPeriodHours"] == 24
    assert summary["EncryptionType"] == "KMS"
    assert summary["KeyId"] == applied.outputs[KEY]["arn"]
    assert summary["StreamARN"] == applied.outputs[STREAM]["arn"]
    tags = client("kinesis").list_tags_for_stream(StreamName=ctx.names.stream)["Tags"]
    assert {"Key": "mlpipe:resource", "Value": STREAM} in tags


def test_failure_queue_is_encrypted_tls_only_and_keeps_messages_14_days(
    ctx: Context, applied: Report
) -> None:
    sqs = client("sqs")
    url = sqs.get_queue_url(QueueName=ctx.names.stream_dlq)["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["KmsMasterKeyId"] == applied.outputs[KEY]["arn"]
    assert attributes["MessageRetentionPeriod"] == str(14 * 24 * 3600)
    [statement] = json.loads(attributes["Policy"])["Statement"]
    assert statement["Effect"] == "Deny" and statement["Principal"] == "*"
    assert statement["Resource"] == [attributes["QueueArn"]]
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"]["mlpipe:resource"] == QUEUE


def test_mapping_settings_are_exactly_the_spec(ctx: Context, applied: Report) -> None:
    live = mapping(ctx)
    assert live["FunctionArn"] == applied.outputs[function_key(STREAM_PROCESSOR)]["arn"]
    assert live["EventSourceArn"] == applied.outputs[STREAM]["arn"]
    assert live["StartingPosition"] == "LATEST"
    assert live["BatchSize"] == 100
    assert live["MaximumBatchingWindowInSeconds"] == 5
    assert live["BisectBatchOnFunctionError"] is True
    assert live["MaximumRetryAttempts"] == 3
    assert live["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert live["DestinationConfig"]["OnFailure"] == {"Destination": applied.outputs[QUEUE]["arn"]}
    tags = client("lambda").list_tags(Resource=live["EventSourceMappingArn"])["Tags"]
    assert tags["mlpipe:resource"] == MAPPING


def test_stream_processor_role_is_scoped_to_this_stream_and_queue(
    ctx: Context, applied: Report
) -> None:
    role = applied.outputs[role_key(STREAM_PROCESSOR)]["name"]
    document = client("iam").get_role_policy(RoleName=role, PolicyName="least-privilege")[
        "PolicyDocument"
    ]
    by_sid = {s["Sid"]: s for s in document["Statement"]}
    assert by_sid["ReadStream"]["Resource"] == [applied.outputs[STREAM]["arn"]]
    # SubscribeToShard takes a consumer ARN (enhanced fan-out), which the pipeline has none of.
    assert "kinesis:SubscribeToShard" not in by_sid["ReadStream"]["Action"]
    assert by_sid["KeepFailedRecords"]["Resource"] == [applied.outputs[QUEUE]["arn"]]
    assert by_sid["KeepFailedRecords"]["Action"] == ["sqs:SendMessage"]
    assert by_sid["UseKey"]["Resource"] == [applied.outputs[KEY]["arn"]]
    unscoped = {s["Sid"] for s in document["Statement"] if "*" in s["Resource"]}
    assert unscoped == {"Tracing", "VpcNetworkInterfaces"}


def test_mapping_drift_is_repaired_and_shard_count_and_retention_update_the_stream_in_place(
    ctx: Context, applied: Report
) -> None:
    client("lambda").update_event_source_mapping(
        UUID=mapping(ctx)["UUID"], BatchSize=500, BisectBatchOnFunctionError=False
    )
    wider = with_spec(ctx, "stream", shards=3, retention_hours=48)
    ctx.aws.log.reset()
    plan = apply(stream_set(wider))
    changed = step_paths(plan)
    assert set(changed) == {MAPPING, STREAM}
    action, paths = changed[MAPPING]
    assert (action, sorted(paths)) == (
        Action.UPDATE,
        ["BatchSize", "BisectBatchOnFunctionError"],
    )
    live = mapping(ctx)
    assert live["BatchSize"] == 100 and live["BisectBatchOnFunctionError"] is True
    action, paths = changed[STREAM]
    assert (action, sorted(paths)) == (Action.UPDATE, ["RetentionPeriodHours", "ShardCount"])
    assert ctx.aws.log.count("kinesis:UpdateShardCount") == 1
    assert ctx.aws.log.count("kinesis:IncreaseStreamRetentionPeriod") == 1
    assert ctx.aws.log.count("kinesis:CreateStream") == 0
    summary = client("kinesis").describe_stream_summary(StreamName=ctx.names.stream)[
        "StreamDescriptionSummary"
    ]
    assert summary["OpenShardCount"] == 3 and summary["RetentionPeriodHours"] == 48
    assert not plan_apply(stream_set(wider)).changes


def test_a_new_starting_position_replaces_the_mapping(ctx: Context, applied: Report) -> None:
    before = mapping(ctx)["UUID"]
    replayed = with_spec(ctx, "stream", starting_position="TRIM_HORIZON")
    plan = apply(stream_set(replayed))
    assert step_paths(plan)[MAPPING][0] is Action.REPLACE
    after = mapping(ctx)
    assert after["UUID"] != before and after["StartingPosition"] == "TRIM_HORIZON"


def test_destroy_deletes_mapping_queue_and_stream(ctx: Context, applied: Report) -> None:
    plan = destroy(stream_set(ctx))
    deleted = {s.key for s in plan.steps if s.action is Action.DELETE}
    assert {STREAM, QUEUE, MAPPING} <= deleted
    assert client("kinesis").list_streams()["StreamNames"] == []
    assert client("sqs").list_queues().get("QueueUrls", []) == []
    assert all(r.read() is None for r in kinesis.resources(ctx))
