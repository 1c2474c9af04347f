"""What the pipeline's alarms say now: the query behind `status` and `watch`."""

from __future__ import annotations

from typing import Any

from mlpipe.core.context import Context
from mlpipe.resources.monitoring.alarms import alarm_rules

# describe_alarms takes at most 100 names.
BATCH = 100


def alarm_states(ctx: Context) -> list[dict[str, Any]]:
    """Each pipeline alarm's state (OK, ALARM, INSUFFICIENT_DATA, or MISSING), in rule order."""
    names = [ctx.names.alarm(rule.purpose) for rule in alarm_rules(ctx)]
    paginator = ctx.aws.client("cloudwatch").get_paginator("describe_alarms")
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(names), BATCH):
        pages = paginator.paginate(
            AlarmNames=names[start : start + BATCH], AlarmTypes=["MetricAlarm"]
        )
        found.update({a["AlarmName"]: a for page in pages for a in page["MetricAlarms"]})
    return [_state(name, found.get(name)) for name in names]


def _state(name: str, alarm: dict[str, Any] | None) -> dict[str, Any]:
    if alarm is None:
        return {"name": name, "state": "MISSING", "reason": "not created yet", "updated": None}
    updated = alarm.get("StateUpdatedTimestamp")
    return {
        "name": name,
        "state": alarm["StateValue"],
        "reason": alarm.get("StateReason", ""),
        "updated": updated.isoformat() if updated else None,
    }
