"""Shared helpers for the batch job tests: a moto-backed pipeline and a fake scorer."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from boto3.dynamodb.types import TypeDeserializer

from batch_job.__main__ import main

REGION = "us-east-1"
BUCKET = "ml-pipeline-data"
TABLE = "ml-pipeline-predictions"
ACTIVE_PARAM = "/ml-pipeline/prod/models/active-version"
DEPLOYMENT_PARAM = "/ml-pipeline/prod/models/deployment"
RUN_ID = "run-2024-06-01"
DEPLOYMENT = {
    "variants": [
        {"name": "ModelA", "version": "v1.0.0", "weight": 80},
        {"name": "ModelB", "version": "v2.0.0", "weight": 20},
    ],
    "champion": "ModelA",
    "challenger": "ModelB",
}


class FakeScorer:
    """Deterministic scorer: the prediction is the rounded sum of the features."""

    def __init__(self, version: str = "v1.0.0", fail_on_call: int | None = None) -> None:
        self.version = version
        self.fail_on_call = fail_on_call
        self.calls = 0
        self.instances = 0

    def __call__(self, instances: list[list[float]]) -> tuple[list[float], str]:
        self.calls += 1
        if self.fail_on_call is not None and self.calls == self.fail_on_call:
            raise RuntimeError("endpoint unavailable")
        self.instances += len(instances)
        return [round(sum(features), 6) for features in instances], self.version


@dataclass
class Pipeline:
    """Moto-backed bucket, table and parameters, plus helpers to run the job and read results."""

    session: boto3.Session
    s3: Any
    dynamodb: Any
    calls: Counter[str] = field(default_factory=Counter)
    sleeps: list[float] = field(default_factory=list)

    def env(self, **overrides: Any) -> dict[str, str]:
        env = {
            "DATA_BUCKET": BUCKET,
            "TABLE_NAME": TABLE,
            "ENDPOINT_NAME": "ml-pipeline-endpoint",
            "ACTIVE_VERSION_PARAM": ACTIVE_PARAM,
            "DEPLOYMENT_PARAM": DEPLOYMENT_PARAM,
            "RUN_ID": RUN_ID,
            "RUN_DATE": "2024-06-01",
        }
        env.update({k: str(v) for k, v in overrides.items()})
        return {k: v for k, v in env.items() if v != "<unset>"}

    def run(
        self, scorer: Callable[..., Any] | None = None, clock: float = 1_717_200_000.0, **env: Any
    ) -> int:
        return main(
            self.env(**env),
            session=self.session,
            scorer=scorer,
            sleep=self.sleeps.append,
            clock=lambda: clock,
        )

    def put_input(self, name: str, text: str, run_id: str = RUN_ID) -> str:
        key = f"input/{run_id}/{name}"
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=text.encode("utf-8"))
        return key

    def keys(self, prefix: str) -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    def read(self, key: str) -> str:
        return self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode("utf-8")

    def objects(self, prefix: str) -> dict[str, str]:
        return {key: self.read(key) for key in self.keys(prefix)}

    def json_lines(self, prefix: str) -> list[dict[str, Any]]:
        return [
            json.loads(line)
            for text in self.objects(prefix).values()
            for line in text.splitlines()
            if line
        ]

    def items(self) -> list[dict[str, Any]]:
        deserializer = TypeDeserializer()
        pages = self.dynamodb.get_paginator("scan").paginate(TableName=TABLE)
        return [
            {k: deserializer.deserialize(v) for k, v in item.items()}
            for page in pages
            for item in page["Items"]
        ]


def summaries(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """Fields of every summary line the job logged."""
    return [
        record.fields  # type: ignore[attr-defined]
        for record in caplog.records
        if record.name.startswith("batch_job") and record.getMessage() == "summary"
    ]


@dataclass
class Dataset:
    good: dict[str, list[float]]  # record id -> features
    bad: dict[str, str]  # raw line -> reason
    records: int
    chunks: int


def write_mixed_inputs(pipeline: Pipeline) -> Dataset:
    """A .jsonl, a .csv and a .json object under the run's input prefix, with a few bad records.

    With CHUNK_SIZE=25 the three objects make 9 + 7 + 1 = 17 chunks.
    """
    good: dict[str, list[float]] = {}
    bad: dict[str, str] = {}

    jsonl: list[str] = []
    for i in range(200):
        features = [float(i), i / 10, 1.5]
        good[f"j{i}"] = features
        jsonl.append(json.dumps({"id": f"j{i}", "features": features}))
    jsonl_bad = {
        57: ('{"id": "broken", "features": [1, 2', "unparseable"),
        90: ('{"id": "jnan", "features": [NaN, 1, 2]}', "non_finite_feature"),
        120: ('{"id": "jshort", "features": [1, 2]}', "feature_count_mismatch"),
        150: ('{"id": "jtext", "features": [1, "two", 3]}', "non_numeric_feature"),
    }
    for position in sorted(jsonl_bad, reverse=True):
        raw, reason = jsonl_bad[position]
        jsonl.insert(position, raw)
        bad[raw] = reason
    jsonl.insert(40, "")  # blank lines are not records
    pipeline.put_input("part-a.jsonl", "\n".join(jsonl) + "\n")

    rows = ["id,f1,f2,f3,f4"]
    for i in range(150):
        good[f"c{i}"] = [float(i), float(2 * i), 0.5, -1.0]
        rows.append(f"c{i},{i},{2 * i},0.5,-1")
    csv_bad = {
        10: ("cbad,1,abc,3,4", "non_numeric_feature"),
        70: ("cshort,1,2", "column_count_mismatch"),
        130: ("cinf,1,inf,3,4", "non_finite_feature"),
    }
    for position in sorted(csv_bad, reverse=True):
        raw, reason = csv_bad[position]
        rows.insert(position, raw)
        bad[raw] = reason
    pipeline.put_input("part-b.csv", "\r\n".join(rows) + "\r\n")

    json_lines = []
    for i in range(10):
        good[f"k{i}"] = [i / 4, -float(i), 0.0]
        json_lines.append(json.dumps({"features": good[f"k{i}"], "id": f"k{i}"}))
    pipeline.put_input("part-c.json", "\n".join(json_lines))

    pipeline.put_input("README.txt", "not an input object")
    pipeline.put_input("stray.jsonl", '{"id": "other-run", "features": [1]}\n', run_id="other")
    return Dataset(good=good, bad=bad, records=len(good) + len(bad), chunks=17)


def expected_prediction(features: list[float]) -> float:
    return round(sum(features), 6)
