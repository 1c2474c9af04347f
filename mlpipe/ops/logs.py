"""The pipeline's components' CloudWatch log groups, read with FilterLogEvents (`mlpipe logs`).

``tail`` yields the events of a log group from a start time, oldest first, optionally matching
a CloudWatch Logs filter pattern; with ``follow`` it keeps asking for newer events, as
``aws logs tail --follow`` does, never yielding an event twice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from botocore.exceptions import ClientError

from mlpipe.context import PipelineContext
from mlpipe.core.errors import MlpipeError, UsageError
from mlpipe.core.find import not_found

__all__ = ["COMPONENTS", "check_component", "log_group", "tail"]

# Component → what it is, and its log group (from the pipeline's names).
COMPONENTS: dict[str, tuple[str, Callable[[PipelineContext], str]]] = {
    "preprocess": (
        "the preprocess function (API requests)",
        lambda ctx: ctx.names.function_log_group("preprocess"),
    ),
    "stream": (
        "the stream processor function (Kinesis records)",
        lambda ctx: ctx.names.function_log_group("stream-processor"),
    ),
    "batch": ("the batch inference jobs", lambda ctx: ctx.names.batch_log_group),
    "workflow": ("the batch workflow's state machine", lambda ctx: ctx.names.workflow_log_group),
    "endpoint": (
        "the SageMaker endpoint's model containers",
        lambda ctx: f"/aws/sagemaker/Endpoints/{ctx.names.endpoint}",
    ),
}


def check_component(component: str) -> str:
    if component not in COMPONENTS:
        raise UsageError(f"unknown component {component!r}: one of {', '.join(COMPONENTS)}")
    return component


def log_group(ctx: PipelineContext, component: str) -> str:
    return COMPONENTS[check_component(component)][1](ctx)


def _page(
    ctx: PipelineContext, group: str, start_ms: int, pattern: str | None
) -> Iterator[dict[str, Any]]:
    logs = ctx.aws.client("logs")
    params: dict[str, Any] = {"logGroupName": group, "startTime": start_ms}
    if pattern:
        params["filterPattern"] = pattern
    try:
        for page in logs.get_paginator("filter_log_events").paginate(**params):
            yield from page.get("events", [])
    except ClientError as exc:
        if not_found("logs", exc):
            raise MlpipeError(
                f"log group {group} does not exist: nothing has logged there yet, or the "
                "pipeline is not applied"
            ) from exc
        raise


def tail(
    ctx: PipelineContext,
    group: str,
    start_ms: int,
    *,
    pattern: str | None = None,
    follow: bool = False,
    poll: float = 2.0,
    stop: threading.Event | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[dict[str, Any]]:
    """The group's events from ``start_ms`` (epoch milliseconds), oldest first; with
    ``follow``, then the new ones as they come, until ``stop`` is set."""
    seen: set[str] = set()
    while True:
        events = sorted(_page(ctx, group, start_ms, pattern), key=lambda e: e["timestamp"])
        for event in events:
            if event["eventId"] in seen:
                continue
            seen.add(event["eventId"])
            start_ms = max(start_ms, int(event["timestamp"]))
            yield event
        if not follow or (stop is not None and stop.is_set()):
            return
        sleep(poll)
