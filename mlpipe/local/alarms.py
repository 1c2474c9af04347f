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
  datapoints of the evaluation range do not cover (see :func:`evaluate` in
  :mod:`mlpipe.local.alarm_rules`; the doc's example tables are tests). A percentile alarm with
  ``EvaluateLowSampleCountPercentile: ignore`` keeps its state while a period has fewer than
  10/(1-p) samples. Metrics are matched by namespace, name and the exact set of dimensions, as
  CloudWatch identifies a metric.
- **State changes**: a new alarm starts ``INSUFFICIENT_DATA``; ``PutMetricAlarm`` on an existing
  alarm keeps its state and history. Every change (from evaluation or ``SetAlarmState``) sets
  ``StateValue``, ``StateReason``, ``StateReasonData`` and ``StateUpdatedTimestamp``, is
  recorded in the alarm's history (``DescribeAlarmHistory``), and, with actions enabled,
  publishes CloudWatch's notification to the SNS topics of the new state's actions. Each
  notification is also logged (the embedded AWS's log) and appended to
  :data:`mlpipe.local.alarm_history.NOTIFICATIONS_FILE` when it is set (``mlpipe local status``
  shows them). moto's CloudWatch classes are extended in :mod:`mlpipe.local.moto_ext.cloudwatch`.
- **Percentiles** in ``GetMetricStatistics`` (``ExtendedStatistics``) and ``GetMetricData``
  (``Stat: p99``), nearest-rank over the raw values of the period.

Time. :class:`AlarmEvaluator` evaluates every alarm every ``interval`` seconds on a thread
(the embedded AWS runs one) or once per :meth:`AlarmEvaluator.evaluate_once` call at a time the
caller gives (tests). :data:`TIME_SCALE` (``MLPIPE_LOCAL_TIME_SCALE``) divides every alarm's
period on the embedded AWS: at 60, a 300-second period is evaluated over 5 seconds of data,
so a demo sees alarms fire in seconds. :data:`mlpipe.local.alarm_history.wall` is the clock of
state changes made by ``SetAlarmState``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from moto.cloudwatch.models import CloudWatchBackend, MetricDatum, cloudwatch_backends

from mlpipe.local.alarm_history import change_state, epoch
from mlpipe.local.alarm_rules import (
    RANGE_EXTRA,
    AlarmSettings,
    Evaluation,
    evaluate,
    percentile,
    statistic,
)
from mlpipe.local.service import Periodic

__all__ = [
    "TIME_SCALE",
    "AlarmEvaluator",
    "AlarmSettings",
    "Evaluation",
    "evaluate",
    "percentile",
    "statistic",
]


def _scale_from_env() -> float:
    try:
        return max(1.0, float(os.environ.get("MLPIPE_LOCAL_TIME_SCALE") or 1))
    except ValueError:
        return 1.0


TIME_SCALE: float = _scale_from_env()
"""How many times faster alarm periods pass on the embedded AWS (1: as on AWS)."""


# --- the evaluator --------------------------------------------------------------------------


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
                    (epoch(datum.timestamp), datum.value, datum.unit)
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


class AlarmEvaluator(Periodic):
    """Evaluates every metric alarm of the embedded AWS, every ``interval`` seconds."""

    thread_name = "mlpipe-alarms"
    failure = "alarm evaluation failed"
    failure_level = logging.ERROR

    def __init__(self, interval: float = 1.0, clock: Callable[[], float] = time.time) -> None:
        super().__init__(interval)
        self.clock = clock
        self._indexes: dict[int, _Index] = {}

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

    def run_once(self) -> list[tuple[str, str, str]]:
        return self.evaluate_once()


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
