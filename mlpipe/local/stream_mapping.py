"""A Lambda event source mapping from a Kinesis stream, as ``ListEventSourceMappings`` and
``GetEventSourceMapping`` describe it (what :mod:`mlpipe.local.stream` polls for)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mlpipe.local.functions import ClientFactory

__all__ = ["MappingConfig", "MappingNotFoundError", "find_mapping"]


class MappingNotFoundError(LookupError):
    """No (single) Kinesis event source mapping for the function."""


@dataclass(frozen=True)
class MappingConfig:
    uuid: str
    event_source_arn: str
    function_arn: str
    batch_size: int
    window_seconds: float
    starting_position: str
    starting_timestamp: datetime | None
    bisect: bool
    max_retries: int
    max_record_age: int
    report_item_failures: bool
    on_failure: str | None
    enabled: bool

    @classmethod
    def from_lambda(cls, mapping: Mapping[str, Any]) -> MappingConfig:
        failure = ((mapping.get("DestinationConfig") or {}).get("OnFailure") or {}).get(
            "Destination"
        )
        retries = mapping.get("MaximumRetryAttempts")
        age = mapping.get("MaximumRecordAgeInSeconds")
        return cls(
            uuid=mapping["UUID"],
            event_source_arn=mapping["EventSourceArn"],
            function_arn=mapping["FunctionArn"],
            batch_size=int(mapping.get("BatchSize") or 100),
            window_seconds=float(mapping.get("MaximumBatchingWindowInSeconds") or 0),
            starting_position=mapping.get("StartingPosition") or "LATEST",
            starting_timestamp=mapping.get("StartingPositionTimestamp"),
            bisect=bool(mapping.get("BisectBatchOnFunctionError")),
            max_retries=int(retries) if retries is not None else -1,
            max_record_age=int(age) if age is not None else -1,
            report_item_failures="ReportBatchItemFailures"
            in (mapping.get("FunctionResponseTypes") or []),
            on_failure=failure or None,
            enabled=mapping.get("State") not in ("Disabled", "Disabling"),
        )

    @property
    def stream_name(self) -> str:
        return self.event_source_arn.split(":stream/", 1)[1].split("/", 1)[0]


def find_mapping(
    clients: ClientFactory, function_arn: str, event_source_arn: str | None = None
) -> MappingConfig:
    """The function's Kinesis mapping (filtered by ARN: moto misses some listed by name)."""
    paginator = clients("lambda").get_paginator("list_event_source_mappings")
    found = [
        m
        for page in paginator.paginate()
        for m in page.get("EventSourceMappings", [])
        if m.get("FunctionArn") == function_arn
        and ":kinesis:" in str(m.get("EventSourceArn"))
        and (event_source_arn is None or m.get("EventSourceArn") == event_source_arn)
    ]
    if len(found) != 1:
        what = "no" if not found else f"{len(found)}"
        raise MappingNotFoundError(
            f"{what} Kinesis event source mappings for {function_arn}"
            + (f" from {event_source_arn}" if event_source_arn else "")
        )
    return MappingConfig.from_lambda(found[0])
