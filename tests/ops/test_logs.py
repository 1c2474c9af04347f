"""`mlpipe logs`: a component's log group read with FilterLogEvents, and --follow."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from mlpipe.core.context import Context
from mlpipe.core.errors import MlpipeError, UsageError
from mlpipe.ops.logs import COMPONENTS, log_group, tail

# A minute ago, in epoch milliseconds: CloudWatch Logs refuses events from the future.
T0 = int(time.time() * 1000) - 60_000


def write(ctx: Context, group: str, *events: tuple[int, str], stream: str = "s") -> None:
    logs = ctx.aws.client("logs")
    if not logs.describe_log_streams(logGroupName=group, logStreamNamePrefix=stream)["logStreams"]:
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
    logs.put_log_events(
        logGroupName=group,
        logStreamName=stream,
        logEvents=[{"timestamp": t, "message": m} for t, m in events],
    )


@pytest.fixture
def group(ctx: Context) -> str:
    name = log_group(ctx, "preprocess")
    ctx.aws.client("logs").create_log_group(logGroupName=name)
    return name


def test_each_component_has_its_log_group(ctx: Context) -> None:
    groups = {c: log_group(ctx, c) for c in COMPONENTS}
    assert groups == {
        "preprocess": "/aws/lambda/ml-pipeline-prod-preprocess",
        "stream": "/aws/lambda/ml-pipeline-prod-stream-processor",
        "batch": "/aws/batch/ml-pipeline-prod",
        "workflow": "/aws/vendedlogs/states/ml-pipeline-prod",
        "endpoint": "/aws/sagemaker/Endpoints/ml-pipeline-prod-endpoint",
    }
    with pytest.raises(UsageError, match="one of preprocess, stream"):
        log_group(ctx, "api")


def test_events_since_a_time_oldest_first_and_filtered(ctx: Context, group: str) -> None:
    write(ctx, group, (T0 - 1000, "too old"), (T0 + 20, "ERROR second"), stream="b")
    write(ctx, group, (T0 + 10, "first"), (T0 + 30, "ERROR third"), stream="a")
    assert [e["message"] for e in tail(ctx, group, T0)] == ["first", "ERROR second", "ERROR third"]
    errors = tail(ctx, group, T0, pattern="ERROR")
    assert [e["message"] for e in errors] == ["ERROR second", "ERROR third"]


def test_follow_prints_new_events_once(ctx: Context, group: str) -> None:
    write(ctx, group, (T0 + 10, "before"))
    stop = threading.Event()
    later = iter([[(T0 + 20, "new")], [(T0 + 30, "newer")]])

    def sleep(seconds: float) -> None:  # between reads: the function logs more, then stop
        batch = next(later, None)
        if batch is None:
            stop.set()
        else:
            write(ctx, group, *batch)

    seen: list[Any] = [
        e["message"] for e in tail(ctx, group, T0, follow=True, stop=stop, sleep=sleep)
    ]
    assert seen == ["before", "new", "newer"]


def test_a_missing_log_group_says_so(ctx: Context) -> None:
    with pytest.raises(MlpipeError, match="log group /aws/batch/ml-pipeline-prod does not exist"):
        list(tail(ctx, log_group(ctx, "batch"), T0))
