from __future__ import annotations

import base64
import io
import json
import logging
import uuid
from decimal import Decimal
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from lambdas.stream_processor import handler as sp

DAY = 86400
ARRIVAL = 1_699_999_000.0
STREAM_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/mlpipe-requests"


@pytest.fixture
def clock(pipeline: Any) -> Any:
    return pipeline.fresh(sp)


def sequence(i: int) -> str:
    return str(49_590_000_000_000_000_000_000_000_000_000_000_000_000_000_000_000_000 + i)


def kinesis_event(payloads: list[Any], start: int = 0) -> dict[str, Any]:
    """Kinesis records for ``payloads``; a dict is JSON-encoded, a str is sent as is."""
    records = []
    for i, payload in enumerate(payloads, start):
        text = payload if isinstance(payload, str) else json.dumps(payload)
        records.append(
            {
                "eventSource": "aws:kinesis",
                "eventSourceARN": STREAM_ARN,
                "eventID": f"shardId-000000000000:{sequence(i)}",
                "kinesis": {
                    "partitionKey": str(i),
                    "sequenceNumber": sequence(i),
                    "approximateArrivalTimestamp": ARRIVAL + i / 1000,
                    "data": base64.b64encode(text.encode()).decode(),
                },
            }
        )
    return {"Records": records}


def thirty_records() -> list[dict[str, Any]]:
    """Records 10..39 with equally long features; every third carries a requestId."""
    payloads: list[dict[str, Any]] = []
    for i in range(10, 40):
        payload: dict[str, Any] = {"features": [float(i), 0.5, 0.25]}
        if i % 3 == 0:
            payload["requestId"] = f"req-{i}"
        payloads.append(payload)
    return payloads


def body_limit_for(instances: int) -> int:
    """Size of a request body holding ``instances`` of the thirty records' instances."""
    body = {"instances": [[10.0, 0.5, 0.25]] * instances}
    return len(json.dumps(body, separators=(",", ":")))


def failures(result: dict[str, Any]) -> list[str]:
    return [f["itemIdentifier"] for f in result["batchItemFailures"]]


def capture_logs() -> tuple[logging.Handler, io.StringIO]:
    stream = io.StringIO()
    capture = logging.StreamHandler(stream)
    capture.setFormatter(sp.logger.handlers[0].formatter)
    sp.logger.addHandler(capture)
    return capture, stream


def test_packs_records_into_fewest_requests(pipeline: Any, clock: Any, monkeypatch: Any) -> None:
    limit = body_limit_for(10)
    monkeypatch.setenv("MAX_PAYLOAD_BYTES", str(limit))
    chunks = [range(10, 20), range(20, 30), range(30, 40)]
    variants = ["ModelA", "ModelB", "ModelA"]
    pipeline.queue(*(([i / 100 for i in c], v) for c, v in zip(chunks, variants, strict=True)))
    invoke_calls = pipeline.record_calls(
        sp._client("sagemaker-runtime"), "sagemaker-runtime.InvokeEndpoint"
    )
    payloads = thirty_records()

    result = sp.handler(kinesis_event(payloads), None)

    assert failures(result) == []
    assert len(invoke_calls) == 3
    assert all(len(call["Body"]) <= limit for call in invoke_calls)
    assert all("TargetVariant" not in call for call in invoke_calls)
    sent = [inst for call in invoke_calls for inst in json.loads(call["Body"])["instances"]]
    assert sent == [p["features"] for p in payloads]

    items = {item["sequenceNumber"]: item for item in pipeline.items()}
    assert len(items) == 30
    for n, i in enumerate(range(10, 40)):
        item = items[sequence(n)]
        assert item["predictions"] == Decimal(str(i / 100))
        assert item["features"] == [Decimal(str(float(i))), Decimal("0.5"), Decimal("0.25")]
        expected_variant = variants[(i - 10) // 10]
        assert item["invokedVariant"] == expected_variant
        assert item["modelVersion"] == {"ModelA": "v1.0.0", "ModelB": "v2.0.0"}[expected_variant]
        assert item["source"] == "stream"
        assert item["timestamp"] == int((ARRIVAL + n / 1000) * 1000)
        assert item["expirationTime"] == int(pipeline.wall_clock) + 30 * DAY
        if i % 3 == 0:
            assert item["predictionId"] == f"req-{i}"
        else:
            assert uuid.UUID(item["predictionId"])


def test_pack_fills_each_request_up_to_the_limit(pipeline: Any, clock: Any) -> None:
    records = [
        sp._decode(r, r["kinesis"]["sequenceNumber"], 10**6)
        for r in kinesis_event(thirty_records())["Records"]
    ]

    assert [len(c) for c in sp.pack(records, body_limit_for(10) - 1)] == [9, 9, 9, 3]
    assert [len(c) for c in sp.pack(records, body_limit_for(30))] == [30]


def test_endpoint_failure_reports_only_that_chunk(
    pipeline: Any, clock: Any, monkeypatch: Any
) -> None:
    monkeypatch.setenv("MAX_PAYLOAD_BYTES", str(body_limit_for(10)))
    pipeline.queue(([0.1] * 10, "ModelA"), ([0.3] * 10, "ModelA"))
    pipeline.fail_calls(
        sp._client("sagemaker-runtime"), "sagemaker-runtime.InvokeEndpoint", lambda n: n == 2
    )

    result = sp.handler(kinesis_event(thirty_records()), None)

    assert failures(result) == [sequence(n) for n in range(10, 20)]
    stored = sorted(item["sequenceNumber"] for item in pipeline.items())
    assert stored == sorted(sequence(n) for n in [*range(10), *range(20, 30)])


def test_wrong_prediction_count_fails_the_chunk(
    pipeline: Any, clock: Any, monkeypatch: Any
) -> None:
    monkeypatch.setenv("MAX_PAYLOAD_BYTES", str(body_limit_for(10)))
    pipeline.queue(([1] * 10, "ModelA"), ([2] * 9, "ModelB"), ([3] * 10, "ModelA"))

    result = sp.handler(kinesis_event(thirty_records()), None)

    assert failures(result) == [sequence(n) for n in range(10, 20)]
    assert len(pipeline.items()) == 20


def test_unstorable_prediction_fails_only_its_record(pipeline: Any, clock: Any) -> None:
    pipeline.queue(('{"predictions": [NaN, 0.5]}', "ModelA"))

    result = sp.handler(kinesis_event([{"features": [1]}, {"features": [2]}]), None)

    assert failures(result) == [sequence(0)]
    assert [item["sequenceNumber"] for item in pipeline.items()] == [sequence(1)]


def test_unprocessed_items_are_retried_then_reported(
    pipeline: Any, clock: Any, monkeypatch: Any
) -> None:
    """DynamoDB throttles req-12 and req-36 once, and req-21 and req-39 on every attempt."""
    flaky, stuck = {"req-12", "req-36"}, {"req-21", "req-39"}
    seen: set[str] = set()
    calls: list[int] = []
    real_dynamodb = boto3.client("dynamodb", region_name=pipeline.region)

    def throttle(params: dict[str, Any], **kwargs: Any) -> tuple[AWSResponse, dict[str, Any]]:
        requests = json.loads(params["body"])["RequestItems"][pipeline.table]
        calls.append(len(requests))
        kept, dropped = [], []
        for request in requests:
            pid = request["PutRequest"]["Item"]["predictionId"]["S"]
            if pid in stuck or (pid in flaky and pid not in seen):
                dropped.append(request)
            else:
                kept.append(request)
            seen.add(pid)
        if kept:
            real_dynamodb.batch_write_item(RequestItems={pipeline.table: kept})
        parsed = {"UnprocessedItems": {pipeline.table: dropped} if dropped else {}}
        return AWSResponse("https://example.invalid", 200, {}, None), parsed

    sp._client("dynamodb").meta.events.register("before-call.dynamodb.BatchWriteItem", throttle)
    delays: list[float] = []
    monkeypatch.setattr(sp, "_sleep", delays.append)
    pipeline.queue(([i / 100 for i in range(10, 40)], "ModelA"))

    result = sp.handler(kinesis_event(thirty_records()), None)

    # req-21 is record 11, req-39 is record 29.
    assert failures(result) == [sequence(11), sequence(29)]
    stored = {item["predictionId"] for item in pipeline.items()}
    assert len(stored) == 28
    assert flaky <= stored
    assert not stuck & stored
    assert calls == [25, 2, 1, 1, 5, 2, 1, 1]
    assert delays == [0.05, 0.1, 0.2] * 2


def test_replayed_batch_overwrites_instead_of_duplicating(
    pipeline: Any, clock: Any, monkeypatch: Any
) -> None:
    event = kinesis_event(thirty_records())
    pipeline.queue(([i / 100 for i in range(10, 40)], "ModelA"))

    first = sp.handler(event, None)
    monkeypatch.setattr(sp, "_wall", lambda: pipeline.wall_clock + 3600)
    second = sp.handler(event, None)

    assert failures(first) == failures(second) == []
    items = pipeline.items()
    assert len(items) == 30
    assert {item["expirationTime"] for item in items} == {
        int(pipeline.wall_clock) + 3600 + 30 * DAY
    }


def test_duplicate_request_ids_in_one_batch_are_written_once(pipeline: Any, clock: Any) -> None:
    event = kinesis_event([{"features": [1], "requestId": "same"}] * 2)
    for record in event["Records"]:
        record["kinesis"]["approximateArrivalTimestamp"] = ARRIVAL
    pipeline.queue(([0.1, 0.2], "ModelA"))
    # moto only rejects fully identical items, so check the keys sent to DynamoDB directly.
    writes = pipeline.record_calls(sp._client("dynamodb"), "dynamodb.BatchWriteItem")

    result = sp.handler(event, None)

    assert failures(result) == []
    [write] = writes
    assert len(write["RequestItems"][pipeline.table]) == 1
    [item] = pipeline.items()
    assert item["predictionId"] == "same"
    assert item["sequenceNumber"] == sequence(1)


MALFORMED = [
    "replaced by data that is not base64",
    "not json",
    json.dumps([1, 2]),
    json.dumps({"features": []}),
    json.dumps({"features": [1, True]}),
    '{"features": [NaN]}',
    json.dumps({"features": [1], "requestId": 7}),
    json.dumps({"features": list(range(100))}),  # too large for MAX_PAYLOAD_BYTES=200
    "[" * 100_000 + "]" * 100_000,
    '{"features": [1' + "0" * 5000 + "]}",
]


@pytest.mark.parametrize("report", [False, True])
def test_malformed_records(pipeline: Any, clock: Any, monkeypatch: Any, report: bool) -> None:
    monkeypatch.setenv("MAX_PAYLOAD_BYTES", "200")
    if report:
        monkeypatch.setenv("REPORT_MALFORMED", "true")
    event = kinesis_event([{"features": [1.0]}, *MALFORMED, {"features": [2.0]}])
    event["Records"][1]["kinesis"]["data"] = "%%% not base64"
    pipeline.queue(([0.1, 0.2], "ModelA"))
    capture, logs = capture_logs()
    try:
        result = sp.handler(event, None)
    finally:
        sp.logger.removeHandler(capture)

    bad = [sequence(n) for n in range(1, len(MALFORMED) + 1)]
    assert failures(result) == (bad if report else [])
    assert sorted(item["sequenceNumber"] for item in pipeline.items()) == [
        sequence(0),
        sequence(len(MALFORMED) + 1),
    ]
    entries = [json.loads(line) for line in logs.getvalue().splitlines()]
    summary = next(e for e in entries if e["message"] == "batch processed")
    assert summary["poison"] == len(MALFORMED)
    assert sorted(e["sequenceNumber"] for e in entries if e["message"] == "poison record") == bad


def test_ssm_is_read_once_per_ttl(pipeline: Any, clock: Any) -> None:
    pipeline.queue(([1], "ModelA"), ([2], "ModelA"), ([3], "ModelA"))
    ssm_calls: list[str] = []
    sp._client("ssm").meta.events.register(
        "before-call.ssm", lambda model, **kw: ssm_calls.append(model.name)
    )

    sp.handler(kinesis_event([{"features": [1]}], start=0), None)
    clock.advance(10)
    sp.handler(kinesis_event([{"features": [2]}], start=1), None)
    assert ssm_calls == ["GetParameters"]

    clock.advance(30)
    sp.handler(kinesis_event([{"features": [3]}], start=2), None)
    assert ssm_calls == ["GetParameters", "GetParameters"]
    assert len(pipeline.items()) == 3


def test_malformed_records_go_to_the_failure_queue_with_their_reasons(
    pipeline: Any, clock: Any, monkeypatch: Any
) -> None:
    sqs = boto3.client("sqs", region_name=pipeline.region)
    url = sqs.create_queue(QueueName="stream-failures")["QueueUrl"]
    monkeypatch.setenv("FAILURE_QUEUE_URL", url)
    monkeypatch.setenv("REPORT_MALFORMED", "true")
    deep = "[" * 100_000 + "]" * 100_000
    huge = '{"features": [1' + "0" * 5000 + "]}"
    event = kinesis_event([{"features": [1.0]}, deep, huge, "not json", {"features": [2.0]}])
    pipeline.queue(([0.1, 0.2], "ModelA"))

    result = sp.handler(event, None)

    assert failures(result) == []  # set aside, not failed: the batch is not retried
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    found = sorted((json.loads(m["Body"]) for m in messages), key=lambda m: m["sequenceNumber"])
    assert [(m["sequenceNumber"], m["reason"][:30]) for m in found] == [
        (sequence(1), "data is nested too deeply"),
        (sequence(2), "'features[0]' is out of range:"),
        (sequence(3), "data is not base64-encoded JSO"),
    ]
    assert base64.b64decode(found[2]["data"]) == b"not json"
    assert found[0]["eventSourceARN"] == STREAM_ARN and found[0]["partitionKey"] == "1"
    assert len(pipeline.items()) == 2


def test_malformed_records_are_reported_when_the_failure_queue_cannot_take_them(
    pipeline: Any, clock: Any, monkeypatch: Any
) -> None:
    monkeypatch.setenv("FAILURE_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/123456789012/gone")
    monkeypatch.setenv("REPORT_MALFORMED", "true")
    pipeline.queue(([0.1], "ModelA"))

    result = sp.handler(kinesis_event([{"features": [1.0]}, "not json"]), None)

    assert failures(result) == [sequence(1)]  # retried, then the mapping's destination
    assert len(pipeline.items()) == 1


def test_a_batch_of_large_poison_records_fits_one_failure_queue_request(
    pipeline: Any, clock: Any, monkeypatch: Any
) -> None:
    sqs = boto3.client("sqs", region_name=pipeline.region)
    url = sqs.create_queue(QueueName="stream-failures")["QueueUrl"]
    monkeypatch.setenv("FAILURE_QUEUE_URL", url)
    monkeypatch.setenv("REPORT_MALFORMED", "true")
    sends = pipeline.record_calls(sp._client("sqs"), "sqs.SendMessageBatch")
    big = "x" * 900_000  # a Kinesis record of almost 1 MiB that is not JSON

    result = sp.handler(kinesis_event([big] * 10), None)

    assert failures(result) == []
    [send] = sends
    assert sum(len(e["MessageBody"].encode()) for e in send["Entries"]) < 256 * 1024
    bodies = [json.loads(e["MessageBody"]) for e in send["Entries"]]
    assert all(b["dataTruncated"] for b in bodies)
