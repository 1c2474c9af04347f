"""The demo's flow, with smaller counts: real models behind the real handlers and runtimes."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from mlpipe.demo import Demo, DemoSettings
from mlpipe.local.services import LocalServices
from mlpipe.ops.client import api_client
from mlpipe.pipeline import Pipeline
from mlpipe.spec import Spec

pytest.importorskip("sklearn")

# ModelB serves v3.0.0, the faulty version, from its canary on.
SERVED_BY = {"ModelA": {"v1.0.0"}, "ModelB": {"v2.0.0", "v3.0.0"}}


class Quiet:
    def __init__(self) -> None:
        self.steps: list[str] = []

    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        yield
        self.steps.append(title)

    def note(self, key: str, message: str) -> None:
        return None


def test_the_demo_end_to_end(spec: Spec, fake_credentials: None) -> None:
    seen: dict[str, Any] = {}

    def inspect(pipeline: Pipeline, services: LocalServices) -> None:
        ddb = pipeline.aws.client("dynamodb")
        pages = ddb.get_paginator("scan").paginate(TableName=pipeline.ctx.names.predictions_table)
        seen["items"] = [item for page in pages for item in page["Items"]]
        client = api_client(pipeline.ctx, services.api_url)
        seen["after_rollback"] = [
            client.predict([10.0] * 30, fresh=f"-check-{i}").version for i in range(30)
        ]

    # No batching window on the stream: its 60 records are far from a full batch of 100, and
    # the poller would hold each shard's records for the window (5 s) before the handler sees
    # them. 100 predictions, each of another held-out row: 4 standard deviations of the A/B
    # share are 0.16.
    data = spec.model_dump()
    data["stream"]["batching_window_seconds"] = 0
    settings = DemoSettings(requests=100, stream_records=60)
    reporter = Quiet()
    result = Demo(Spec.model_validate(data), settings, reporter).run(inspect)
    numbers = result.numbers

    assert reporter.steps[-1] == "destroy"
    assert numbers["second_apply_writes"] == 0
    # The observed A/B split is the 80/20 of the weights, within four standard deviations.
    served = numbers["served"]
    share = numbers["split"]["ModelA"]
    assert abs(share - 0.8) <= 4 * math.sqrt(0.8 * 0.2 / served), (share, served)
    assert numbers["accuracy_v2.0.0"] > numbers["accuracy_v1.0.0"]

    # After the rollback every request is served by the old version; the faulty canary was
    # rolled back by the alarm its own errors fired (nothing set an alarm state).
    assert set(seen["after_rollback"]) == {"v1.0.0"}
    assert numbers["canary_alarm"] == "ml-pipeline-prod-invocation-5xx-ModelB"
    # the runtimes' metrics go out in batches, not a call per value
    assert numbers["metric_calls"] * 5 < numbers["metric_values"]
    assert 0 < numbers["canary_rollback_seconds"] < 15
    assert "OK to ALARM" in [
        s.removeprefix("Alarm updated from ") for _, s in numbers["alarm_history"]
    ]

    items = seen["items"]
    # Each prediction carries the version of the variant that really served it.
    for item in items:
        variant = item.get("invokedVariant", {}).get("S")
        if variant:
            assert item["modelVersion"]["S"] in SERVED_BY[variant], item
    sources = Counter(item.get("source", {}).get("S", "api") for item in items)
    # The stream stored every record exactly once.
    stream_ids = [i["predictionId"]["S"] for i in items if i.get("source", {}).get("S") == "stream"]
    assert len(stream_ids) == len(set(stream_ids)) == 60
    assert sources["batch"] == numbers["batch_scored"] == 143
    assert sources["api"] >= served
