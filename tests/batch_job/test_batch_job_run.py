"""The job end to end against moto S3/DynamoDB with an injected deterministic scorer."""

from __future__ import annotations

import json
import logging
from collections import Counter
from decimal import Decimal

import pytest
from batch_job_support import (
    BUCKET,
    RUN_ID,
    FakeScorer,
    Pipeline,
    expected_prediction,
    summaries,
    write_mixed_inputs,
)

T0 = 1_717_200_000.0
TTL_SECONDS = 30 * 86_400
DONE_PREFIX = f"runs/{RUN_ID}/done/"
OUTPUT_PREFIX = f"predictions/dt=2024-06-01/model_version=v1.0.0/run={RUN_ID}/"


def _by_prediction_id(items: list[dict]) -> dict[str, dict]:
    return {item["predictionId"]: item for item in items}


def test_two_shards_together_score_every_record_exactly_once(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    data = write_mixed_inputs(pipeline)
    scorer = FakeScorer()

    assert pipeline.run(scorer, clock=T0, SHARD_INDEX=0, SHARD_COUNT=2, CHUNK_SIZE=25) == 0
    shard0_keys = set(pipeline.keys("predictions/"))
    shard0_ids = {line["id"] for line in pipeline.json_lines("predictions/")}
    assert pipeline.run(scorer, clock=T0, SHARD_INDEX=1, SHARD_COUNT=2, CHUNK_SIZE=25) == 0
    shard1_keys = set(pipeline.keys("predictions/")) - shard0_keys

    assert shard0_keys
    assert shard1_keys
    lines = pipeline.json_lines("predictions/")
    assert Counter(line["id"] for line in lines) == Counter(data.good.keys())
    shard1_ids = {line["id"] for line in lines} - shard0_ids
    assert shard0_ids
    assert shard1_ids
    assert all(key.startswith(OUTPUT_PREFIX) for key in shard0_keys | shard1_keys)
    for line in lines:
        assert line["features"] == data.good[line["id"]]
        assert line["prediction"] == expected_prediction(data.good[line["id"]])
        assert line["modelVersion"] == "v1.0.0"
        assert line["timestamp"] == int(T0 * 1000)

    items = pipeline.items()
    assert Counter(item["recordId"] for item in items) == Counter(data.good.keys())
    assert set(_by_prediction_id(items)) == {line["predictionId"] for line in lines}
    for item in items:
        assert item["prediction"] == Decimal(repr(expected_prediction(data.good[item["recordId"]])))
        assert item["source"] == "batch"
        assert item["runId"] == RUN_ID
        assert item["modelVersion"] == "v1.0.0"
        assert item["timestamp"] == int(T0 * 1000)
        assert item["expirationTime"] == int(T0) + TTL_SECONDS
    assert scorer.instances == len(data.good)

    assert len(pipeline.keys(DONE_PREFIX)) == data.chunks
    shard_summaries = summaries(caplog)
    assert [s["shard"] for s in shard_summaries] == [0, 1]
    assert sum(s["records"] for s in shard_summaries) == data.records
    assert sum(s["scored"] for s in shard_summaries) == len(data.good)
    assert sum(s["bad"] for s in shard_summaries) == len(data.bad)
    assert sum(s["chunksProcessed"] for s in shard_summaries) == data.chunks
    assert sum(s["invokeCalls"] for s in shard_summaries) == scorer.calls
    assert all(s["status"] == "ok" for s in shard_summaries)


def test_objects_take_the_buckets_default_encryption(pipeline: Pipeline) -> None:
    # An explicit "aws:kms" without a key id would encrypt with the AWS-managed aws/s3 key
    # instead of the bucket's default key (the pipeline's own).
    write_mixed_inputs(pipeline)
    puts: list[dict] = []
    pipeline.session.events.register(
        "before-parameter-build.s3.PutObject", lambda params, **_: puts.append(dict(params))
    )

    assert pipeline.run(FakeScorer(), CHUNK_SIZE=25) == 0

    assert puts
    assert {p["Key"] for p in puts} >= set(pipeline.keys("predictions/"))
    assert all("ServerSideEncryption" not in p and "SSEKMSKeyId" not in p for p in puts)


def test_rerun_with_same_run_id_skips_done_chunks_and_writes_nothing(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    data = write_mixed_inputs(pipeline)
    assert pipeline.run(FakeScorer(), clock=T0, CHUNK_SIZE=25) == 0
    objects_before = pipeline.objects("predictions/") | pipeline.objects("errors/")
    items_before = _by_prediction_id(pipeline.items())
    pipeline.calls.clear()

    rerun_scorer = FakeScorer()
    assert pipeline.run(rerun_scorer, clock=T0 + 86_400, CHUNK_SIZE=25) == 0

    assert pipeline.calls["s3.PutObject"] == 0
    assert pipeline.calls["dynamodb.BatchWriteItem"] == 0
    assert pipeline.calls["s3.HeadObject"] == 0
    # One listing for the done markers and one for the input prefix.
    assert pipeline.calls["s3.ListObjectsV2"] == 2
    assert rerun_scorer.calls == 0
    summary = summaries(caplog)[-1]
    assert summary["chunksSkipped"] == data.chunks
    assert summary["chunksProcessed"] == 0
    assert summary["scored"] == 0
    assert summary["invokeCalls"] == 0
    assert summary["records"] == data.records
    assert summary["bad"] == len(data.bad)
    assert pipeline.objects("predictions/") | pipeline.objects("errors/") == objects_before
    assert _by_prediction_id(pipeline.items()) == items_before


def test_interrupted_run_resumes_without_losing_or_duplicating_records(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    data = write_mixed_inputs(pipeline)
    assert pipeline.run(FakeScorer(fail_on_call=5), clock=T0, CHUNK_SIZE=25) == 1
    assert summaries(caplog)[-1]["status"] == "failed"
    markers = pipeline.keys(DONE_PREFIX)
    assert len(markers) == 4
    # A crash between a chunk's writes and its marker leaves outputs without a marker.
    pipeline.s3.delete_object(Bucket=BUCKET, Key=markers[0])
    first_attempt_items = _by_prediction_id(pipeline.items())
    first_attempt_objects = pipeline.objects("predictions/")
    assert first_attempt_items

    assert pipeline.run(FakeScorer(), clock=T0 + 3_600, CHUNK_SIZE=25) == 0

    summary = summaries(caplog)[-1]
    assert summary["chunksSkipped"] == 3
    assert summary["chunksProcessed"] == data.chunks - 3
    lines = pipeline.json_lines("predictions/")
    assert Counter(line["id"] for line in lines) == Counter(data.good.keys())
    items = _by_prediction_id(pipeline.items())
    assert Counter(item["recordId"] for item in items.values()) == Counter(data.good.keys())
    # The run keeps the first attempt's clock, so rewritten items and objects are identical.
    assert {item["timestamp"] for item in items.values()} == {int(T0 * 1000)}
    assert {item["expirationTime"] for item in items.values()} == {int(T0) + TTL_SECONDS}
    assert all(items[pid] == item for pid, item in first_attempt_items.items())
    final_objects = pipeline.objects("predictions/")
    assert all(final_objects[key] == text for key, text in first_attempt_objects.items())
    assert len(pipeline.keys(DONE_PREFIX)) == data.chunks


def test_bad_records_land_in_errors_prefix_with_reason_and_raw_line(pipeline: Pipeline) -> None:
    data = write_mixed_inputs(pipeline)

    assert pipeline.run(FakeScorer(), CHUNK_SIZE=25) == 0

    error_keys = pipeline.keys("errors/")
    assert error_keys
    assert all(
        key.startswith(f"errors/run={RUN_ID}/shard=0/") and key.endswith(".jsonl")
        for key in error_keys
    )
    errors = pipeline.json_lines("errors/")
    assert {error["raw"]: error["reason"] for error in errors} == data.bad
    assert len(errors) == len(data.bad)
    by_raw = {error["raw"]: error for error in errors}
    assert "'f2'" in by_raw["cbad,1,abc,3,4"]["detail"]
    assert by_raw["cbad,1,abc,3,4"]["id"] == "cbad"
    assert by_raw["cbad,1,abc,3,4"]["key"] == f"input/{RUN_ID}/part-b.csv"
    assert by_raw['{"id": "broken", "features": [1, 2']["key"] == f"input/{RUN_ID}/part-a.jsonl"
    assert "expected 3" in by_raw['{"id": "jshort", "features": [1, 2]}']["detail"]


@pytest.mark.parametrize(
    ("limit", "exit_code"),
    # 7 bad records among 367.
    [("6", 1), ("7", 0), ("0.01", 1), ("0.02", 0)],
)
def test_max_bad_records_threshold_decides_the_exit_code(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture, limit: str, exit_code: int
) -> None:
    data = write_mixed_inputs(pipeline)

    assert pipeline.run(FakeScorer(), CHUNK_SIZE=25, MAX_BAD_RECORDS=limit) == exit_code

    # Bad records never stop the job early: everything was processed.
    assert len(pipeline.keys(DONE_PREFIX)) == data.chunks
    assert len(pipeline.json_lines("predictions/")) == len(data.good)
    threshold_errors = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.ERROR and "MAX_BAD_RECORDS" in r.getMessage()
    ]
    assert len(threshold_errors) == exit_code
    assert summaries(caplog)[-1]["status"] == ("bad_records_exceeded" if exit_code else "ok")


def test_bad_record_verdict_holds_on_rerun(pipeline: Pipeline) -> None:
    write_mixed_inputs(pipeline)
    assert pipeline.run(FakeScorer(), CHUNK_SIZE=25, MAX_BAD_RECORDS="6") == 1
    pipeline.calls.clear()

    assert pipeline.run(FakeScorer(), CHUNK_SIZE=25, MAX_BAD_RECORDS="6") == 1
    assert pipeline.calls["s3.PutObject"] == 0


def test_oversized_record_is_bad_not_fatal(pipeline: Pipeline) -> None:
    # Same feature count; only the second record's encoding is too long for one request.
    small = json.dumps({"id": "small", "features": [0.0] * 20})
    huge = json.dumps({"id": "huge", "features": [1.2345678901234567] * 20})
    pipeline.put_input("wide.jsonl", f"{small}\n{huge}\n")

    assert pipeline.run(FakeScorer(), MAX_PAYLOAD_BYTES=100, MAX_BAD_RECORDS="1") == 0

    assert [line["id"] for line in pipeline.json_lines("predictions/")] == ["small"]
    assert [e["reason"] for e in pipeline.json_lines("errors/")] == ["payload_too_large"]


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"RUN_ID": "<unset>"}, "RUN_ID"),
        ({"RUN_ID": "run/../x"}, "RUN_ID"),
        ({"DATA_BUCKET": ""}, "DATA_BUCKET"),
        ({"SHARD_INDEX": "2", "SHARD_COUNT": "2"}, "SHARD_INDEX"),
        ({"CHUNK_SIZE": "0"}, "CHUNK_SIZE"),
        ({"MAX_BAD_RECORDS": "lots"}, "MAX_BAD_RECORDS"),
        ({"RUN_DATE": "2024-13-01"}, "RUN_DATE"),
    ],
)
def test_bad_configuration_exits_2_naming_the_variable(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture, overrides: dict, variable: str
) -> None:
    assert pipeline.run(FakeScorer(), **overrides) == 2

    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(messages) == 1
    assert variable in messages[0]
    assert not pipeline.calls


def test_endpoint_scoring_requires_endpoint_name(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    assert pipeline.run(None, ENDPOINT_NAME="<unset>") == 2
    assert any("ENDPOINT_NAME" in r.getMessage() for r in caplog.records)


def test_empty_input_prefix_is_not_an_error(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    assert pipeline.run(FakeScorer()) == 0
    assert summaries(caplog)[-1]["records"] == 0
    assert pipeline.keys("predictions/") == []


def test_chunk_is_not_marked_done_when_its_writes_fail(pipeline: Pipeline) -> None:
    data = write_mixed_inputs(pipeline)
    writes = Counter[str]()

    def fail_third_batch_write(**_: object) -> None:
        writes["BatchWriteItem"] += 1
        if writes["BatchWriteItem"] == 3:
            raise ConnectionError("DynamoDB unreachable")

    pipeline.session.events.register("before-call.dynamodb.BatchWriteItem", fail_third_batch_write)

    # One BatchWriteItem call per 25-record chunk: the third chunk fails mid-write.
    assert pipeline.run(FakeScorer(), clock=T0, CHUNK_SIZE=25) == 1
    assert len(pipeline.keys(DONE_PREFIX)) == 2

    assert pipeline.run(FakeScorer(), clock=T0, CHUNK_SIZE=25) == 0
    items = pipeline.items()
    assert Counter(item["recordId"] for item in items) == Counter(data.good.keys())
    assert len(pipeline.keys(DONE_PREFIX)) == data.chunks
