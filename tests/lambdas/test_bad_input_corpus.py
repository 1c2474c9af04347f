"""The bad-input corpus of API requests and stream records (tests/corpus/api.yaml, stream.yaml),
run through the real handlers with the environment the default spec gives them: each request
is a 4xx naming what is wrong, before anything is scored or stored; each bad record is set
aside alone, with its reason, in the failure queue, and never fails the batch."""

from __future__ import annotations

import base64
import json
from typing import Any

import boto3
import pytest

from lambdas.preprocess import handler as pre
from lambdas.stream_processor import handler as sp
from tests.corpus.corpus import (
    FEATURE_COUNT,
    HEADER,
    api_body,
    cache_key,
    cases,
    expand,
    number_texts,
)


def api_event(case: dict[str, Any]) -> dict[str, Any]:
    body = api_body(case)
    values = cache_key(case, body)
    return {
        "httpMethod": "POST",
        "path": "/predict",
        "headers": {HEADER: values[-1]} if values else None,
        "multiValueHeaders": {HEADER: values} if values else None,
        "body": body,
        "isBase64Encoded": False,
    }


@pytest.fixture
def served(pipeline: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("FEATURE_COUNT", str(FEATURE_COUNT))
    monkeypatch.setenv("CACHE_KEY_HEADER", HEADER)
    pipeline.fresh(pre)
    pipeline.fresh(sp)
    return pipeline


@pytest.mark.parametrize(
    "case", [c for c in cases("api") if c.values[0].get("layer", "handler") == "handler"]
)
def test_a_bad_request_is_a_4xx_naming_what_is_wrong(case: dict[str, Any], served: Any) -> None:
    invocations = served.record_calls(
        pre._client("sagemaker-runtime"), "sagemaker-runtime.InvokeEndpoint"
    )
    response = pre.handler(api_event(case), None)
    assert response["statusCode"] == case["status"]
    error = json.loads(response["body"])["error"]
    assert case["message"] in error
    assert "\n" not in error
    assert invocations == [] and served.items() == []


def test_a_valid_request_built_like_the_corpus_is_scored(served: Any) -> None:
    served.queue(([0.5], "ModelA"))
    response = pre.handler(api_event({"features": FEATURE_COUNT}), None)
    assert response["statusCode"] == 200, response["body"]


# --- stream records --------------------------------------------------------------------------


def record_data(case: dict[str, Any]) -> str:
    """The record's data, base64 (see tests/corpus/stream.yaml)."""
    if "not_base64" in case:
        return str(case["not_base64"])
    if "data" in case:
        raw = case["data"]
    elif "deep" in case:
        raw = "[" * case["deep"] + "]" * case["deep"]
    else:
        first = ["1" + "0" * (case["huge_int"] - 1)] if "huge_int" in case else []
        texts = number_texts(first + case.get("features_raw", []), FEATURE_COUNT)
        raw = '{"features": [' + ", ".join(texts) + "]" + expand(case.get("extra", "")) + "}"
    return base64.b64encode(raw.encode("latin-1")).decode()


def kinesis_record(index: int, data: str) -> dict[str, Any]:
    return {
        "eventSource": "aws:kinesis",
        "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/requests",
        "kinesis": {
            "partitionKey": str(index),
            "sequenceNumber": str(1000 + index),
            "approximateArrivalTimestamp": 1_700_000_000 + index,
            "data": data,
        },
    }


def valid_data(index: int) -> str:
    payload = {"requestId": f"good-{index}", "features": [float(index)] * FEATURE_COUNT}
    return base64.b64encode(json.dumps(payload).encode()).decode()


@pytest.mark.parametrize("case", cases("stream"))
def test_a_bad_record_is_set_aside_with_its_reason_and_never_fails_the_batch(
    case: dict[str, Any], served: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqs = boto3.client("sqs", region_name=served.region)
    queue = sqs.create_queue(QueueName="stream-failures")["QueueUrl"]
    monkeypatch.setenv("FAILURE_QUEUE_URL", queue)
    monkeypatch.setenv("REPORT_MALFORMED", "true")
    served.queue(([0.1, 0.2], "ModelA"))
    event = {
        "Records": [
            kinesis_record(0, valid_data(0)),
            kinesis_record(1, record_data(case)),
            kinesis_record(2, valid_data(2)),
        ]
    }

    result = sp.handler(event, None)

    assert result == {"batchItemFailures": []}
    [message] = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    body = json.loads(message["Body"])
    assert body["sequenceNumber"] == "1001"
    assert case["reason"] in body["reason"]
    assert sorted(item["predictionId"] for item in served.items()) == ["good-0", "good-2"]
