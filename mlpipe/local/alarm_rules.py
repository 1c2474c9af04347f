"""CloudWatch's alarm evaluation and statistics, as pure functions of an alarm's settings and
its metric's values (:mod:`mlpipe.local.alarms` runs them on the embedded AWS).

- **Statistics** (``Sum``, ``Average``, ``SampleCount``, ``Minimum``, ``Maximum`` and
  percentiles such as ``p99``, nearest rank over the raw values of a period).
- **Evaluation**, as "Evaluating an alarm" describes it
  (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/AlarmThatSendsEmail.html#alarm-evaluation):
  see :func:`evaluate`.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from moto.cloudwatch.models import Alarm as MotoAlarm

__all__ = ["AlarmSettings", "Evaluation", "as_utc", "evaluate", "iso", "percentile", "statistic"]

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


def iso(epoch: float) -> str:
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
        "queryDate": iso(now),
        "startDate": iso(first * length),
        "statistic": settings.stat,
        "period": settings.period,
        "recentDatapoints": [v for _, v, _ in evaluated],
        "threshold": settings.threshold,
        "evaluatedDatapoints": [
            {"timestamp": iso(start), "sampleCount": count, "value": value}
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


def as_utc(stamp: datetime) -> datetime:
    """A moto timestamp (naive: UTC) as an aware one."""
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
