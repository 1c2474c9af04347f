"""CloudWatch alarms that evaluate on the embedded AWS, and percentile statistics.

moto stores metric alarms but never evaluates them (they stay in the state they were created
in), cannot compute percentiles, and has no ``DescribeAlarmHistory``. This module adds:

- **Evaluation**, as "Evaluating an alarm" describes it
  (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/AlarmThatSendsEmail.html#alarm-evaluation):
  the alarm's statistic (``Sum``, ``Average``, ``SampleCount``, ``Minimum``, ``Maximum`` or a
  percentile such as ``p99``) of each period of ``Period`` seconds (aligned on multiples of the
  period, the newest one still filling) makes one datapoint; the alarm is ``ALARM`` when at
  least ``DatapointsToAlarm`` of the ``EvaluationPeriods`` evaluated datapoints breach the
  threshold by ``ComparisonOperator``. Missing datapoints are handled as "How alarm state is
  evaluated when data is missing" says, ``TreatMissingData`` filling in only what the real
  datapoints of the evaluation range do not cover (see :func:`evaluate`; the doc's example
  tables are tests). A percentile alarm with ``EvaluateLowSampleCountPercentile: ignore``
  keeps its state while a period has fewer than 10/(1-p) samples. Metrics are matched by
  namespace, name and the exact set of dimensions, as CloudWatch identifies a metric.
- **State changes**: a new alarm starts ``INSUFFICIENT_DATA``; ``PutMetricAlarm`` on an existing
  alarm keeps its state and history. Every change (from evaluation or ``SetAlarmState``) sets
  ``StateValue``, ``StateReason``, ``StateReasonData`` and ``StateUpdatedTimestamp``, is
  recorded in the alarm's history (``DescribeAlarmHistory``), and, with actions enabled,
  publishes CloudWatch's notification to the SNS topics of the new state's actions. Each
  notification is also logged (the embedded AWS's log) and appended to
  :data:`NOTIFICATIONS_FILE` when it is set (``mlpipe local status`` shows them).
- **Percentiles** in ``GetMetricStatistics`` (``ExtendedStatistics``) and ``GetMetricData``
  (``Stat: p99``), nearest-rank over the raw values of the period.

Time. :class:`AlarmEvaluator` evaluates every alarm every ``interval`` seconds on a thread
(the embedded AWS runs one) or once per :meth:`AlarmEvaluator.evaluate_once` call at a time the
caller gives (tests). :data:`TIME_SCALE` (``MLPIPE_LOCAL_TIME_SCALE``) divides every alarm's
period on the embedded AWS: at 60, a 300-second period is evaluated over 5 seconds of data,
so a demo sees alarms fire in seconds. :data:`wall` is the clock of state changes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from moto.cloudwatch.models import Alarm as MotoAlarm
from moto.cloudwatch.models import CloudWatchBackend, MetricDatum, Statistics, cloudwatch_backends
from moto.cloudwatch.responses import CloudWatchResponse
from moto.core.responses import ActionResult
from moto.sns.models import sns_backends

from mlpipe.local.service import Service

__all__ = [
    "NOTIFICATIONS_FILE",
    "TIME_SCALE",
    "AlarmEvaluator",
    "AlarmSettings",
    "Evaluation",
    "evaluate",
    "install",
    "percentile",
    "statistic",
]

log = logging.getLogger(__name__)


def _scale_from_env() -> float:
    try:
        return max(1.0, float(os.environ.get("MLPIPE_LOCAL_TIME_SCALE") or 1))
    except ValueError:
        return 1.0


TIME_SCALE: float = _scale_from_env()
"""How many times faster alarm periods pass on the embedded AWS (1: as on AWS)."""

NOTIFICATIONS_FILE: Path | None = None
"""Where alarm notifications are appended as JSON lines (the detached server sets it)."""

wall: Callable[[], float] = time.time
"""Time source (epoch seconds) of state changes made by SetAlarmState."""

OK, ALARM, INSUFFICIENT = "OK", "ALARM", "INSUFFICIENT_DATA"
# CloudWatch retrieves more datapoints than EvaluationPeriods (the doc's examples: 5 for 3).
RANGE_EXTRA = 2
PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d+)?)$")
COMPARISONS: dict[str, tuple[Callable[[float, float], bool], str]] = {
    "GreaterThanThreshold": (lambda v, t: v > t, "greater than"),
    "GreaterThanOrEqualToThreshold": (lambda v, t: v >= t, "greater than or equal to"),
    "LessThanThreshold": (lambda v, t: v < t, "less than"),
    "LessThanOrEqualToThreshold": (lambda v, t: v <= t, "less than or equal to"),
}


# --- statistics -----------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float | None:
    """The ``p`` percentile (0-100) of ``values``, nearest rank."""
    if not values:
        return None
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(p / 100 * len(ordered))))
    return ordered[rank - 1]


def statistic(values: Sequence[float], stat: str) -> float | None:
    """CloudWatch's statistic ``stat`` of a period's raw values (None: no data)."""
    if not values:
        return None
    match = PERCENTILE.match(stat)
    if match:
        return percentile(values, float(match[1]))
    if stat == "Sum":
        return float(sum(values))
    if stat == "Average":
        return float(sum(values)) / len(values)
    if stat == "SampleCount":
        return float(len(values))
    if stat == "Minimum":
        return float(min(values))
    if stat == "Maximum":
        return float(max(values))
    raise ValueError(f"unknown statistic {stat}")


# --- evaluation -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AlarmSettings:
    """What evaluating a metric alarm needs, as PutMetricAlarm takes it."""

    namespace: str
    metric: str
    dimensions: frozenset[tuple[str, str]]
    stat: str
    period: int
    evaluation_periods: int
    datapoints_to_alarm: int
    threshold: float
    comparison: str
    treat_missing_data: str = "missing"
    low_sample_count: str = "evaluate"
    unit: str | None = None

    @classmethod
    def of(cls, alarm: MotoAlarm) -> AlarmSettings | None:
        """The settings of a single-metric alarm; None for others (metric math, composite)."""
        if not alarm.metric_name or alarm.comparison_operator not in COMPARISONS:
            return None
        periods = int(alarm.evaluation_periods)
        return cls(
            namespace=alarm.namespace,
            metric=alarm.metric_name,
            dimensions=frozenset((d.name, d.value) for d in alarm.dimensions),
            stat=alarm.extended_statistic or alarm.statistic,
            period=int(alarm.period),
            evaluation_periods=periods,
            datapoints_to_alarm=int(alarm.datapoints_to_alarm or periods),
            threshold=float(alarm.threshold),
            comparison=alarm.comparison_operator,
            treat_missing_data=alarm.treat_missing_data or "missing",
            low_sample_count=alarm.evaluate_low_sample_count_percentile or "evaluate",
            unit=alarm.unit,
        )


@dataclass(frozen=True)
class Evaluation:
    """The state an evaluation calls for (None: keep the current one), and why."""

    state: str | None
    reason: str
    data: dict[str, Any]


def _stamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%d/%m/%y %H:%M:%S")


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def _low_sample(stat: str, count: int) -> bool:
    """Too few samples for a percentile to be statistically significant: under 10/(1-p)."""
    match = PERCENTILE.match(stat)
    return bool(match) and count < 10 / max(1e-9, 1 - float(match[1]) / 100)


def evaluate(
    settings: AlarmSettings,
    samples: Iterable[tuple[float, float]],
    now: float,
    current: str,
    scale: float = 1.0,
) -> Evaluation:
    """Evaluate an alarm at ``now`` over ``samples`` (epoch seconds, value) of its metric.

    As "How alarm state is evaluated when data is missing" describes it: the evaluation range
    is the last N + :data:`RANGE_EXTRA` periods (N = EvaluationPeriods). With at least N
    datapoints there, the N most recent are evaluated and TreatMissingData plays no part;
    with fewer, every real one is evaluated and the rest (up to N) are filled in by
    TreatMissingData. ALARM when at least M (DatapointsToAlarm) breach, else OK; with no
    datapoint at all, ``missing`` gives INSUFFICIENT_DATA and ``ignore`` keeps the state; with
    only breaching ones, too few for M, ``ignore`` keeps the state and ``missing`` gives ALARM
    when the oldest period of the range has data, else INSUFFICIENT_DATA (the doc's table).
    """
    length = settings.period / scale
    newest = math.floor(now / length)
    n, m = settings.evaluation_periods, settings.datapoints_to_alarm
    first = newest - (n + RANGE_EXTRA) + 1
    by_period: dict[int, list[float]] = defaultdict(list)
    for when, value in samples:
        index = math.floor(when / length)
        if first <= index <= newest and when <= now:
            by_period[index].append(value)
    compare, words = COMPARISONS[settings.comparison]
    points = []  # (period start, value or None, samples), oldest first
    for index in range(first, newest + 1):
        values = by_period.get(index, [])
        ignore_low = settings.low_sample_count == "ignore"
        if values and ignore_low and _low_sample(settings.stat, len(values)):
            return Evaluation(None, "too few samples", {})
        points.append((index * length, statistic(values, settings.stat), len(values)))
    existing = [(start, v, c) for start, v, c in points if v is not None]
    evaluated = existing[-n:]
    breaching = sum(1 for _, v, _ in evaluated if compare(v, settings.threshold))
    fill = n - len(evaluated)  # missing datapoints TreatMissingData decides on
    treat = settings.treat_missing_data
    data = {
        "version": "1.0",
        "queryDate": _iso(now),
        "startDate": _iso(first * length),
        "statistic": settings.stat,
        "period": settings.period,
        "recentDatapoints": [v for _, v, _ in evaluated],
        "threshold": settings.threshold,
        "evaluatedDatapoints": [
            {"timestamp": _iso(start), "sampleCount": count, "value": value}
            for start, value, count in reversed(evaluated)
        ],
    }
    if not existing and treat in ("missing", "ignore"):
        if treat == "ignore":
            return Evaluation(None, "no datapoints: the state is kept", data)
        return Evaluation(INSUFFICIENT, f"Insufficient Data: {n} datapoints were unknown.", data)
    real = breaching
    if treat == "breaching":
        breaching += fill
    alarming = breaching >= m
    if fill and not alarming and real == len(evaluated) and treat in ("missing", "ignore"):
        # Only breaching datapoints, too few to alarm.
        unknown = f"Insufficient Data: {fill} datapoints were unknown."
        if treat == "ignore":
            return Evaluation(None, "too few datapoints: the state is kept", data)
        if points[0][1] is None:
            return Evaluation(INSUFFICIENT, unknown, data)
        alarming = True  # the oldest datapoint of the range breaches (the doc's last row)
    shown = ", ".join(f"{v:g} ({_stamp(start)})" for start, v, _ in reversed(evaluated))
    if not evaluated:
        counted = f"no datapoints were received for {n} period{'s' if n > 1 else ''}"
    else:
        counted = (
            f"{real} out of the last {len(evaluated)} datapoints [{shown}] "
            f"{'was' if real == 1 else 'were'} {words} the threshold ({settings.threshold:g})"
        )
    if fill and treat in ("breaching", "notBreaching"):
        treated = "Breaching" if treat == "breaching" else "NonBreaching"
        counted += (
            f" and {fill} missing datapoint{'s were' if fill > 1 else ' was'} treated as "
            f"[{treated}]"
        )
    reason = (
        f"Threshold Crossed: {counted} (minimum {m} datapoint{'s' if m > 1 else ''} for "
        f"{'OK -> ALARM' if alarming else 'ALARM -> OK'} transition)."
    )
    return Evaluation(ALARM if alarming else OK, reason, data)


# --- state changes, history, notifications ------------------------------------------------


def _history(alarm: MotoAlarm) -> list[dict[str, Any]]:
    if not hasattr(alarm, "mlpipe_history"):
        alarm.mlpipe_history = []
    return alarm.mlpipe_history  # type: ignore[no-any-return]


def _record(alarm: MotoAlarm, kind: str, summary: str, data: dict[str, Any], when: float) -> None:
    _history(alarm).append(
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
    _record(
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
        "AlarmConfigurationUpdatedTimestamp": _iso(_epoch(alarm.configuration_updated_timestamp)),
        "NewStateValue": alarm.state_value,
        "NewStateReason": alarm.state_reason,
        "StateChangeTime": _iso(when),
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
    _record(alarm, "Action", f"{outcome} action {topic_arn}", {"actionState": outcome}, when)
    log.info("alarm notification: %s -> %s: %s", subject, topic_arn, alarm.state_reason)
    if NOTIFICATIONS_FILE is not None:
        line = {"time": _iso(when), "subject": subject, "topic": topic_arn, "message": message}
        with contextlib.suppress(OSError), NOTIFICATIONS_FILE.open("a", encoding="utf-8") as f:
            f.write(json.dumps(line, default=str) + "\n")


# --- the evaluator --------------------------------------------------------------------------


def _epoch(stamp: datetime) -> float:
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()


def _requests_lock() -> Any:
    from mlpipe.local import moto_ext

    return moto_ext._requests


_Key = tuple[str, str, frozenset[tuple[str, str]]]
# How far back values are kept for evaluation: an alarm's EvaluationPeriods x Period cannot
# exceed one day (PutMetricAlarm), plus its wider evaluation range.
HORIZON_SECONDS = 2 * 86_400
# Values arrive roughly in time order; a scan back stops this far before what it needs.
DISORDER_SECONDS = 300


class _Index:
    """A backend's raw values by metric (namespace, name, dimensions), read incrementally:
    moto's list of metric data only grows, so each pass reads only what is new."""

    def __init__(self, backend: CloudWatchBackend) -> None:
        self.backend = backend
        self.read = 0
        self.samples: dict[_Key, list[tuple[float, float, str | None]]] = defaultdict(list)
        # alarm name -> what its last evaluation saw: nothing new, nothing to evaluate again
        self.evaluated: dict[str, tuple[Any, ...]] = {}

    def update(self, now: float) -> None:
        data = self.backend.metric_data
        if len(data) < self.read:  # emptied: read it all again
            self.read, self.samples, self.evaluated = 0, defaultdict(list), {}
        for datum in data[self.read :]:
            if isinstance(datum, MetricDatum):
                dims = frozenset((d.name, d.value) for d in datum.dimensions)
                self.samples[(datum.namespace, datum.name, dims)].append(
                    (_epoch(datum.timestamp), datum.value, datum.unit)
                )
        self.read = len(data)
        cutoff = now - HORIZON_SECONDS
        for values in self.samples.values():
            if values and values[0][0] < cutoff:
                values[:] = [v for v in values if v[0] >= cutoff]

    def recent(self, key: _Key, since: float, unit: str | None) -> list[tuple[float, float]]:
        """The metric's values from ``since`` on (of ``unit``, when given)."""
        found = []
        for when, value, its_unit in reversed(self.samples.get(key, [])):
            if when < since - DISORDER_SECONDS:
                break
            if when >= since and (unit is None or its_unit == unit):
                found.append((when, value))
        return found


class AlarmEvaluator(Service):
    """Evaluates every metric alarm of the embedded AWS, every ``interval`` seconds."""

    def __init__(self, interval: float = 1.0, clock: Callable[[], float] = time.time) -> None:
        self.interval = interval
        self.clock = clock
        self._indexes: dict[int, _Index] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def evaluate_once(self, now: float | None = None) -> list[tuple[str, str, str]]:
        """Evaluate every alarm at ``now`` (default: the clock); the changes made, as
        (alarm name, old state, new state)."""
        now = self.clock() if now is None else now
        changes = []
        with _requests_lock():
            backends = _backends()
            live = {id(b) for b in backends}
            self._indexes = {k: v for k, v in self._indexes.items() if k in live}
            for backend in backends:
                index = self._indexes.get(id(backend))
                if index is None or index.backend is not backend:
                    index = self._indexes[id(backend)] = _Index(backend)
                index.update(now)
                changes += _evaluate_backend(backend, index, now)
        return changes

    def start(self) -> AlarmEvaluator:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="mlpipe-alarms", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.evaluate_once()
            except Exception:
                log.exception("alarm evaluation failed")

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join()


def _backends() -> list[CloudWatchBackend]:
    found = []
    for regions in list(cloudwatch_backends.values()):
        found += [b for b in list(regions.values()) if b.alarms]
    return found


def _evaluate_backend(
    backend: CloudWatchBackend, index: _Index, now: float
) -> list[tuple[str, str, str]]:
    changes = []
    for name, alarm in list(backend.alarms.items()):
        config = AlarmSettings.of(alarm)
        if config is None:
            continue
        length = config.period / TIME_SCALE
        since = (math.floor(now / length) - config.evaluation_periods - RANGE_EXTRA) * length
        key = (config.namespace, config.metric, config.dimensions)
        # The outcome changes only with new values, a new period, or a new state or definition.
        seen = (
            id(alarm),
            config,
            alarm.state_value,
            TIME_SCALE,
            math.floor(now / length),
            len(index.samples.get(key, ())),
        )
        if index.evaluated.get(name) == seen:
            continue
        index.evaluated[name] = seen
        points = index.recent(key, since, config.unit)
        result = evaluate(config, points, now, alarm.state_value, TIME_SCALE)
        if result.state is not None and result.state != alarm.state_value:
            old = alarm.state_value
            change_state(alarm, result.state, result.reason, json.dumps(result.data), now)
            changes.append((name, old, result.state))
    return changes


# --- moto's classes -------------------------------------------------------------------------


def _put_metric_alarm(original: Callable[..., Any]) -> Callable[..., Any]:
    """A new alarm starts INSUFFICIENT_DATA; an update keeps the state and history ("When you
    update an existing alarm, its state is left unchanged", PutMetricAlarm)."""

    def put(self: CloudWatchBackend, name: str, *args: Any, **kwargs: Any) -> Any:
        previous = self.alarms.get(name)
        alarm = original(self, name, *args, **kwargs)
        when = wall()
        if previous is not None:
            for attribute in (
                "state_value",
                "state_reason",
                "state_reason_data",
                "state_updated_timestamp",
            ):
                setattr(alarm, attribute, getattr(previous, attribute))
            alarm.mlpipe_history = _history(previous)
            _record(alarm, "ConfigurationUpdate", f'Alarm "{name}" updated', {}, when)
        else:
            alarm.state_value = INSUFFICIENT
            alarm.state_updated_timestamp = datetime.fromtimestamp(when, UTC)
            _record(alarm, "ConfigurationUpdate", f'Alarm "{name}" created', {}, when)
        return alarm

    return put


def _update_state(original: Callable[..., Any]) -> Callable[..., Any]:
    """SetAlarmState goes through the same state change: history and actions."""

    def update(self: MotoAlarm, reason: str, reason_data: str, state_value: str) -> None:
        change_state(self, state_value, reason, reason_data, wall())

    return update


def _percentile_stat(original: Callable[..., Any]) -> Callable[..., Any]:
    """GetMetricData's ``Stat: pNN``: from the raw values of the period."""

    def get(self: Statistics, stat: str) -> Any:
        if PERCENTILE.match(stat):
            return statistic(self.metric_single_values_list, stat)
        return original(self, stat)

    return get


def _get_metric_statistics(original: Callable[..., Any]) -> Callable[..., Any]:
    """GetMetricStatistics with ``ExtendedStatistics`` (moto ignores them)."""

    def get(self: CloudWatchResponse) -> Any:
        extended = self._get_param("ExtendedStatistics") or []
        if not extended:
            return original(self)
        stats = self._get_param("Statistics") or []
        periods = self.cloudwatch_backend.get_metric_statistics(
            self._get_param("Namespace"),
            self._get_param("MetricName"),
            self._get_param("StartTime"),
            self._get_param("EndTime"),
            self._get_int_param("Period"),
            list(stats),
            unit=self._get_param("Unit"),
            dimensions=self._get_param("Dimensions", []),
        )
        datapoints = []
        for period in periods:
            point: dict[str, Any] = {"Timestamp": period.timestamp}
            if period.unit:
                point["Unit"] = period.unit
            for stat in stats:
                point[stat] = period.get_statistics_for_type(stat)
            values = period.metric_single_values_list
            point["ExtendedStatistics"] = {p: statistic(values, p) for p in extended}
            datapoints.append(point)
        return ActionResult({"Label": self._get_param("MetricName"), "Datapoints": datapoints})

    return get


def _describe_alarm_history(self: CloudWatchResponse) -> Any:
    """DescribeAlarmHistory: by alarm name, item type and date range, newest first unless
    ScanBy is TimestampAscending; MaxRecords (default 100) per page with NextToken."""
    name = self._get_param("AlarmName")
    kind = self._get_param("HistoryItemType")
    start, end = self._get_param("StartDate"), self._get_param("EndDate")
    items = []
    for alarm in self.cloudwatch_backend.alarms.values():
        if name and alarm.name != name:
            continue
        for item in _history(alarm):
            if kind and item["HistoryItemType"] != kind:
                continue
            if start and item["Timestamp"] < _as_utc(start):
                continue
            if end and item["Timestamp"] > _as_utc(end):
                continue
            items.append(item)
    items.sort(
        key=lambda i: i["Timestamp"],
        reverse=self._get_param("ScanBy") != "TimestampAscending",
    )
    offset = int(self._get_param("NextToken") or 0)
    size = int(self._get_param("MaxRecords") or 100)
    page = items[offset : offset + size]
    result: dict[str, Any] = {"AlarmHistoryItems": page}
    if offset + size < len(items):
        result["NextToken"] = str(offset + size)
    return ActionResult(result)


def _as_utc(stamp: datetime) -> datetime:
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def install() -> None:
    from mlpipe.local.moto_ext import _add, _wrap

    _wrap(CloudWatchBackend, "put_metric_alarm", _put_metric_alarm)
    _wrap(MotoAlarm, "update_state", _update_state)
    _wrap(Statistics, "get_statistics_for_type", _percentile_stat)
    _wrap(CloudWatchResponse, "get_metric_statistics", _get_metric_statistics)
    _add(CloudWatchResponse, "describe_alarm_history", _describe_alarm_history)
