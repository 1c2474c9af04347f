"""Log lines the embedded AWS's runtimes write to CloudWatch Logs, batched per stream."""

from __future__ import annotations

import time
from typing import Any

import boto3
import pytest
from localaws_testing import REGION

from mlpipe.local.logship import LogShipper

pytestmark = pytest.mark.usefixtures("mocked")


def messages(logs: Any, group: str, stream: str) -> list[str]:
    events = logs.get_log_events(logGroupName=group, logStreamName=stream)["events"]
    return [e["message"] for e in events]


def test_lines_reach_their_streams_creating_group_and_stream() -> None:
    logs = boto3.client("logs", region_name=REGION)
    now = time.time()
    shipper = LogShipper(lambda: logs, wall=lambda: now)
    group = "/aws/sagemaker/Endpoints/ep"
    shipper.write(group, "ModelB/model-v3", "model model-v3: loaded")
    shipper.write(group, "ModelB/model-v3", "ERROR status 500: injected fault")
    shipper.write(group, "ModelA/model-v1", "model model-v1: loaded")
    assert shipper.flush() == 3
    assert messages(logs, group, "ModelB/model-v3") == [
        "model model-v3: loaded",
        "ERROR status 500: injected fault",
    ]
    shipper.write(group, "ModelB/model-v3", "again")  # the stream exists now
    shipper.stop()  # stopping sends what is left
    assert messages(logs, group, "ModelB/model-v3")[-1] == "again"
    assert shipper.flush() == 0
