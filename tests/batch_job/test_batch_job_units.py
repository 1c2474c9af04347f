"""Configuration, parsing, packing, DynamoDB conversion and batch-write retries."""

from __future__ import annotations

import io
import json
import math
from decimal import Decimal

import boto3
import pytest
from botocore.stub import Stubber

from batch_job.config import ConfigError, load_config
from batch_job.job import batch_write_all, json_safe, prediction_id, to_dynamo
from batch_job.records import Line, ObjectParser, chunk_slug, iter_lines, shard_of
from batch_job.scoring import REQUEST_OVERHEAD, encode_request, instance_size, pack_ranges

BASE_ENV = {"DATA_BUCKET": "bucket", "TABLE_NAME": "table", "RUN_ID": "run-1"}


def test_config_defaults() -> None:
    config = load_config(BASE_ENV)

    assert config.input_prefix == "input/run-1/"
    assert (config.shard_index, config.shard_count) == (0, 1)
    assert config.chunk_size == 500
    assert config.max_payload_bytes == 5_000_000
    assert config.max_bad_records == 0.05
    assert config.prediction_ttl_days == 30
    assert config.run_date is None
    assert config.bad_record_limit(200) == pytest.approx(10)


def test_config_reads_every_variable() -> None:
    config = load_config(
        {
            **BASE_ENV,
            "ENDPOINT_NAME": "ep",
            "ACTIVE_VERSION_PARAM": "/a",
            "DEPLOYMENT_PARAM": "/d",
            "INPUT_PREFIX": "batches/x/",
            "SHARD_INDEX": "3",
            "SHARD_COUNT": "4",
            "CHUNK_SIZE": "100",
            "MAX_PAYLOAD_BYTES": "1000",
            "MAX_BAD_RECORDS": "12",
            "PREDICTION_TTL_DAYS": "7",
            "RUN_DATE": "2024-02-29",
        }
    )

    assert (config.endpoint_name, config.active_version_param, config.deployment_param) == (
        "ep",
        "/a",
        "/d",
    )
    assert config.input_prefix == "batches/x/"
    assert (config.shard_index, config.shard_count, config.chunk_size) == (3, 4, 100)
    assert (config.max_payload_bytes, config.prediction_ttl_days) == (1000, 7)
    assert config.run_date == "2024-02-29"
    assert config.bad_record_limit(1_000_000) == 12


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"RUN_ID": ""}, "RUN_ID"),
        ({"TABLE_NAME": "  "}, "TABLE_NAME"),
        ({"SHARD_COUNT": "0"}, "SHARD_COUNT"),
        ({"SHARD_INDEX": "-1"}, "SHARD_INDEX"),
        ({"SHARD_INDEX": "1"}, "SHARD_INDEX"),
        ({"CHUNK_SIZE": "ten"}, "CHUNK_SIZE"),
        ({"MAX_PAYLOAD_BYTES": "0"}, "MAX_PAYLOAD_BYTES"),
        ({"MAX_BAD_RECORDS": "-0.1"}, "MAX_BAD_RECORDS"),
        ({"MAX_BAD_RECORDS": "2.5"}, "MAX_BAD_RECORDS"),
        ({"MAX_BAD_RECORDS": "nan"}, "MAX_BAD_RECORDS"),
        ({"PREDICTION_TTL_DAYS": "0"}, "PREDICTION_TTL_DAYS"),
        ({"RUN_DATE": "20240601"}, "RUN_DATE"),
        ({"RUN_DATE": "2024-02-30"}, "RUN_DATE"),
    ],
)
def test_config_errors_name_the_variable(overrides: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config({**BASE_ENV, **overrides})
    assert info.value.var == variable
    assert str(info.value).startswith(variable)


def _parse_all(fmt: str, text: str) -> list:
    lines = iter_lines(io.BytesIO(text.encode("utf-8")))
    parser = ObjectParser.open(fmt, lines)
    assert parser is not None
    return [parser.parse(index, line) for index, line in enumerate(lines)]


def test_json_lines_parsing_and_reasons() -> None:
    records = _parse_all(
        "jsonl",
        "\n".join(
            [
                '{"id": "a", "features": [1, 2.5]}',
                '{"features": [3, 4]}',
                '{"id": 7, "features": [5, 6]}',
                '{"id": "b", "features": [true, 1]}',
                '{"id": "c", "features": [1e999, 1]}',
                '{"id": "d", "features": []}',
                '{"id": {"x": 1}, "features": [1, 2]}',
                "[1, 2]",
                '{"id": "e", "features": [1, 2, 3]}',
            ]
        ),
    )

    assert [(r.record_id, r.features) for r in records[:3]] == [
        ("a", (1.0, 2.5)),
        (None, (3.0, 4.0)),
        (7, (5.0, 6.0)),
    ]
    assert [r.reason for r in records[3:]] == [
        "non_numeric_feature",
        "non_finite_feature",
        "missing_features",
        "invalid_id",
        "unparseable",
        "feature_count_mismatch",
    ]


def test_feature_count_is_set_by_the_first_good_record() -> None:
    records = _parse_all("jsonl", '{"features": [1, "x", 3]}\n{"features": [1, 2]}\n')

    assert [r.reason for r in records] == ["non_numeric_feature", None]


def test_csv_parsing_with_id_column_anywhere() -> None:
    records = _parse_all(
        "csv",
        "f1, id ,f2\n1.5,r1,2\n 3 ,r2,-4e2\n1,r3,1_000\n1,r4,NaN\n1,r5\n5,,6\n",
    )

    assert [(r.record_id, r.features, r.reason) for r in records] == [
        ("r1", (1.5, 2.0), None),
        ("r2", (3.0, -400.0), None),
        ("r3", None, "non_numeric_feature"),
        ("r4", None, "non_finite_feature"),
        (None, None, "column_count_mismatch"),
        (None, (5.0, 6.0), None),
    ]


def test_iter_lines_drops_bom_crlf_and_blank_lines_and_flags_invalid_utf8() -> None:
    data = b"\xef\xbb\xbfid,f\r\n\r\n  \nr1,1\r\n\xff\xfe,2\n"

    lines = list(iter_lines(io.BytesIO(data)))

    assert [line.text for line in lines[:2]] == ["id,f", "r1,1"]
    assert [line.decodable for line in lines] == [True, True, False]
    parser = ObjectParser("csv", ["id", "f"])
    assert parser.parse(0, lines[2]).reason == "unparseable"
    assert parser.parse(1, Line("r2,2")).ok


def test_chunk_slug_is_safe_and_distinct() -> None:
    first = chunk_slug("input/run-1/a/b.jsonl#0")
    second = chunk_slug("input/run-1/a_b.jsonl#0")

    assert first != second
    assert "/" not in first
    assert "#" not in first
    assert len(chunk_slug("input/" + "x" * 2000 + ".csv#12")) < 200


def test_shard_assignment_is_stable_and_spreads_chunks() -> None:
    # Pinned: changing the hash would move chunks between shards of a run in flight.
    assert [shard_of(f"input/run-1/part-a.jsonl#{n}", 2) for n in range(2)] == [0, 1]
    assert shard_of("input/run-1/part-b.csv#7", 7) == 2
    counts = [0, 0, 0]
    for n in range(300):
        counts[shard_of(f"input/run-1/data.jsonl#{n}", 3)] += 1
    assert all(count > 50 for count in counts)


@pytest.mark.parametrize("max_bytes", [REQUEST_OVERHEAD + 30, 60, 100, 1000])
def test_pack_ranges_fill_requests_up_to_the_limit(max_bytes: int) -> None:
    instances = [[float(i)] * (1 + i % 3) for i in range(40)]
    sizes = [instance_size(instance) for instance in instances]

    ranges = list(pack_ranges(sizes, max_bytes))

    assert [i for start, end in ranges for i in range(start, end)] == list(range(40))
    for start, end in ranges:
        assert len(encode_request(instances[start:end])) <= max_bytes
        if end < len(instances):
            assert len(encode_request(instances[start : end + 1])) > max_bytes


def test_prediction_id_is_deterministic() -> None:
    assert prediction_id("r", "k#0", 3) == prediction_id("r", "k#0", 3)
    assert len({prediction_id("r", "k#0", 3), prediction_id("r", "k#0", 4)}) == 2
    assert prediction_id("r", "k#0", 3) != prediction_id("r2", "k#0", 3)


def test_predictions_become_json_and_dynamodb_safe() -> None:
    raw = {"score": 0.1, "nested": [1, 2.5, math.nan], "big": 1e300, "tiny": 1e-200, "ok": True}

    clean = json_safe(raw)
    stored = to_dynamo(clean)

    assert json.loads(json.dumps(clean, allow_nan=False)) == clean
    assert clean["nested"][2] is None
    assert stored == {
        "score": Decimal("0.1"),
        "nested": [Decimal(1), Decimal("2.5"), None],
        "big": "1e+300",
        "tiny": "1e-200",
        "ok": True,
    }
    boto3.dynamodb.types.TypeSerializer().serialize(stored)


def _item(n: int) -> dict:
    return {"predictionId": {"S": f"p{n}"}, "timestamp": {"N": "1"}}


def _put(items: list[dict]) -> dict:
    return {"RequestItems": {"t": [{"PutRequest": {"Item": item}} for item in items]}}


@pytest.fixture
def stubbed_dynamodb():
    client = boto3.client(
        "dynamodb",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def test_batch_write_retries_unprocessed_items_with_backoff(stubbed_dynamodb) -> None:
    client, stubber = stubbed_dynamodb
    items = [_item(n) for n in range(30)]
    unprocessed = _put(items[3:5])["RequestItems"]
    stubber.add_response("batch_write_item", {"UnprocessedItems": unprocessed}, _put(items[:25]))
    stubber.add_response("batch_write_item", {"UnprocessedItems": unprocessed}, _put(items[3:5]))
    stubber.add_response("batch_write_item", {"UnprocessedItems": {}}, _put(items[3:5]))
    stubber.add_response("batch_write_item", {}, _put(items[25:]))
    sleeps: list[float] = []

    batch_write_all(client, "t", items, sleep=sleeps.append, base_delay=0.1)

    assert sleeps == [0.1, 0.2]


def test_batch_write_backoff_is_bounded_and_gives_up(stubbed_dynamodb) -> None:
    client, stubber = stubbed_dynamodb
    items = [_item(1)]
    for _ in range(5):
        stubber.add_response("batch_write_item", {"UnprocessedItems": _put(items)["RequestItems"]})
    sleeps: list[float] = []

    with pytest.raises(RuntimeError, match="1 items unprocessed after 5 attempts"):
        batch_write_all(
            client, "t", items, sleep=sleeps.append, max_attempts=5, base_delay=1, max_delay=3
        )

    assert sleeps == [1, 2, 3, 3]
