"""`mlpipe watch` and `mlpipe logs` in-process on moto: what they print, and bad input."""

from __future__ import annotations

import json
import re
import time

import boto3
import pytest

from mlpipe.local.metrics import MetricsPublisher
from tests.cli.conftest import cli

ENDPOINT = "ml-pipeline-prod-endpoint"


def test_bad_input_exits_2_before_any_aws_call(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("logs", "api") == 2
    assert "unknown component 'api': one of preprocess, stream" in capsys.readouterr().err
    assert cli("watch", "--json") == 2
    assert "--json prints one snapshot: use it with --once" in capsys.readouterr().err
    assert cli("logs", "preprocess", "--since", "ten") == 2
    assert cli("watch", "--period", "45") == 2
    assert "--period 45: use 1, 5, 10, 30 or a multiple of 60" in capsys.readouterr().err
    assert cli("watch", "--window", "90s") == 2


def test_watch_once_json_and_logs(aws: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("apply", "--yes") == 0
    capsys.readouterr()
    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    publisher = MetricsPublisher(lambda: cloudwatch, wall=lambda: time.time() - 30)
    # ModelA: 8 invocations of 1..8 ms; ModelB: 2 of 10 and 30 ms, one of them a 5XX
    for variant, latencies_ms in (("ModelA", range(1, 9)), ("ModelB", (10, 30))):
        dims = {"EndpointName": ENDPOINT, "VariantName": variant}
        for index, ms in enumerate(latencies_ms):
            publisher.put("AWS/SageMaker", "Invocations", 1, "None", dims)
            publisher.put("AWS/SageMaker", "ModelLatency", ms * 1000, "Microseconds", dims)
            failed = variant == "ModelB" and index == 1
            publisher.put("AWS/SageMaker", "Invocation5XXErrors", int(failed), "None", dims)
    publisher.flush()
    assert cli("watch", "--once", "--json") == 0
    view = json.loads(capsys.readouterr().out)
    variants = {v["name"]: v for v in view["variants"]}
    assert {n: (v["version"], v["weight"]) for n, v in variants.items()} == {
        "ModelA": ("v1.0.0", 80),
        "ModelB": ("v2.0.0", 20),
    }
    assert variants["ModelA"]["share_percent"] == 80.0
    assert variants["ModelA"]["invocations"] == 8
    # nearest rank: p50 of 1..8 is the 4th value, p99 the 8th
    assert (variants["ModelA"]["p50_ms"], variants["ModelA"]["p99_ms"]) == (4.0, 8.0)
    assert (variants["ModelB"]["p99_ms"], variants["ModelB"]["errors_5xx"]) == (30.0, 1)
    assert variants["ModelA"]["instances"] == 1
    assert sum(v or 0 for v in variants["ModelA"]["invocations_series"]) == 8
    assert {a["state"] for a in view["alarms"]} == {"INSUFFICIENT_DATA"}
    assert view["deployment"]["champion"] == "ModelA"

    assert cli("watch", "--once") == 0
    shown = capsys.readouterr().out
    # 80 columns: the figures without the trends, nothing cut
    assert re.search(r"ModelB\s+v2\.0\.0\s+20%\s+20\.0%\s+2\s+10\.0\s+30\.0\s+0/1\s+1\s", shown)
    assert "invocation-5xx-ModelB" in shown and "INSUFFICIENT_DATA" in shown
    assert "invocation-5xx-ModelB" in shown and "INSUFFICIENT_DATA" in shown

    logs = boto3.client("logs", region_name="us-east-1")
    group = "/aws/lambda/ml-pipeline-prod-preprocess"
    logs.create_log_stream(logGroupName=group, logStreamName="s")
    logs.put_log_events(
        logGroupName=group,
        logStreamName="s",
        logEvents=[
            {"timestamp": int(time.time() * 1000) - 1000, "message": "hello from the handler"}
        ],
    )
    assert cli("logs", "preprocess", "--since", "5m") == 0
    assert "s hello from the handler" in capsys.readouterr().out
