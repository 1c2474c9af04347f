"""Alarm state changes on the embedded AWS: the alarm's fields, its history
(``DescribeAlarmHistory``) and, with actions enabled, CloudWatch's notification published to the
SNS topics of the new state's actions. Each notification is also logged (the embedded AWS's log)
and appended to :data:`NOTIFICATIONS_FILE` when it is set (``mlpipe local status`` shows them).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from moto.cloudwatch.models import Alarm as MotoAlarm
from moto.sns.models import sns_backends

from mlpipe.local.alarm_rules import ALARM, INSUFFICIENT, OK, as_utc, iso

log = logging.getLogger("mlpipe.local.alarms")

NOTIFICATIONS_FILE: Path | None = None
"""Where alarm notifications are appended as JSON lines (the detached server sets it)."""

wall: Callable[[], float] = time.time
"""Time source (epoch seconds) of state changes made by SetAlarmState."""


def history(alarm: MotoAlarm) -> list[dict[str, Any]]:
    if not hasattr(alarm, "mlpipe_history"):
        alarm.mlpipe_history = []
    return alarm.mlpipe_history  # type: ignore[no-any-return]


def record(alarm: MotoAlarm, kind: str, summary: str, data: dict[str, Any], when: float) -> None:
    history(alarm).append(
        {
            "AlarmName": alarm.name,
            "AlarmType": "MetricAlarm",
            "Timestamp": datetime.fromtimestamp(when, UTC),
            "HistoryItemType": kind,
            "HistorySummary": summary,
            "HistoryData": json.dumps(data),
        }
    )


def _account(alarm: MotoAlarm) -> str:
    return str(alarm.alarm_arn.split(":")[4])


def change_state(
    alarm: MotoAlarm, state: str, reason: str, reason_data: str | None, when: float
) -> None:
    """Move the alarm to ``state``: fields, history, and its actions' notifications."""
    old = alarm.state_value
    alarm.state_reason = reason
    alarm.state_reason_data = reason_data or "{}"
    if old == state:  # no transition: nothing to record or notify
        return
    alarm.state_value = state
    alarm.state_updated_timestamp = datetime.fromtimestamp(when, UTC)
    record(
        alarm,
        "StateUpdate",
        f"Alarm updated from {old} to {state}",
        {
            "version": "1.0",
            "oldState": {"stateValue": old},
            "newState": {"stateValue": state, "stateReason": reason},
        },
        when,
    )
    actions = {
        ALARM: alarm.alarm_actions,
        OK: alarm.ok_actions,
        INSUFFICIENT: alarm.insufficient_data_actions,
    }[state]
    if alarm.actions_enabled:
        for action in actions or []:
            _notify(alarm, action, old, when)


def _notify(alarm: MotoAlarm, topic_arn: str, old: str, when: float) -> None:
    """CloudWatch's alarm notification, published to an SNS action; also logged."""
    account = _account(alarm)
    message = {
        "AlarmName": alarm.name,
        "AlarmDescription": alarm.description,
        "AWSAccountId": account,
        "AlarmConfigurationUpdatedTimestamp": iso(epoch(alarm.configuration_updated_timestamp)),
        "NewStateValue": alarm.state_value,
        "NewStateReason": alarm.state_reason,
        "StateChangeTime": iso(when),
        "Region": alarm.region_name,
        "AlarmArn": alarm.alarm_arn,
        "OldStateValue": old,
        "Trigger": {
            "MetricName": alarm.metric_name,
            "Namespace": alarm.namespace,
            "Statistic": (alarm.statistic or "").upper() or None,
            "ExtendedStatistic": alarm.extended_statistic,
            "Dimensions": [{"name": d.name, "value": d.value} for d in alarm.dimensions],
            "Period": alarm.period,
            "EvaluationPeriods": alarm.evaluation_periods,
            "DatapointsToAlarm": alarm.datapoints_to_alarm,
            "ComparisonOperator": alarm.comparison_operator,
            "Threshold": alarm.threshold,
            "TreatMissingData": alarm.treat_missing_data,
        },
    }
    subject = f'{alarm.state_value}: "{alarm.name}" in {alarm.region_name}'[:100]
    parts = topic_arn.split(":")
    outcome = "Successfully executed"
    if len(parts) > 5 and parts[2] == "sns":
        try:
            sns_backends[parts[4]][parts[3]].publish(
                json.dumps(message), arn=topic_arn, subject=subject
            )
        except Exception as exc:  # as CloudWatch records a failed action, and goes on
            outcome = f"Failed to execute ({type(exc).__name__})"
    else:
        outcome = "Not executed locally (not an SNS topic):"
    record(alarm, "Action", f"{outcome} action {topic_arn}", {"actionState": outcome}, when)
    log.info("alarm notification: %s -> %s: %s", subject, topic_arn, alarm.state_reason)
    if NOTIFICATIONS_FILE is not None:
        line = {"time": iso(when), "subject": subject, "topic": topic_arn, "message": message}
        with contextlib.suppress(OSError), NOTIFICATIONS_FILE.open("a", encoding="utf-8") as f:
            f.write(json.dumps(line, default=str) + "\n")


def epoch(stamp: datetime) -> float:
    return as_utc(stamp).timestamp()
