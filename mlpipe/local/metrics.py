"""CloudWatch metrics published by the embedded AWS's runtimes, as AWS's services publish them.

The local runtimes serve requests (SageMaker runtime, API, functions, stream poller, batch
workflow); each records the figures the real service would publish to CloudWatch here, with
the same namespace, name, unit and dimensions:

- ``AWS/SageMaker`` per ``EndpointName`` + ``VariantName``: ``Invocations``, ``ModelLatency`` and
  ``OverheadLatency`` (microseconds), ``Invocation4XXErrors`` and ``Invocation5XXErrors`` (by the
  status the model answered). See "Monitor Amazon SageMaker AI with Amazon CloudWatch",
  https://docs.aws.amazon.com/sagemaker/latest/dg/monitoring-cloudwatch.html
- ``AWS/Lambda`` per ``FunctionName``: ``Invocations``, ``Errors``, ``Throttles``, ``Duration``
  (milliseconds), https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html
- ``AWS/Kinesis`` per ``StreamName``: ``GetRecords.IteratorAgeMilliseconds``, the age of the last
  record of a GetRecords call (0 when it returned none: the reader is caught up).
- ``AWS/States`` per ``StateMachineArn``: ``ExecutionsStarted``/``Succeeded``/``Failed``.
- ``AWS/ApiGateway`` per ``ApiName`` + ``Stage``: ``Count``, ``Latency`` and ``IntegrationLatency``
  (milliseconds), ``4XXError``, ``5XXError``, ``CacheHitCount``, ``CacheMissCount``.

Recording is cheap (an append under a lock): :class:`MetricsPublisher` sends what was recorded
with ``PutMetricData`` from a thread of its own every ``flush_interval`` seconds, the values of
one metric and second folded into ``Values``/``Counts`` (raw values, so percentiles stay
exact), at most :data:`MAX_DATUMS` datums per call. A request never waits for CloudWatch.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from mlpipe.local.service import Flusher

__all__ = [
    "MAX_DATUMS",
    "MAX_VALUES",
    "MetricSink",
    "MetricsPublisher",
]


# PutMetricData: at most 1000 metrics per request, and 150 distinct values per Values array.
# https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricData.html
MAX_DATUMS = 1000
MAX_VALUES = 150

Dims = Mapping[str, str]
_Key = tuple[str, str, tuple[tuple[str, str], ...], str, int]


class MetricSink(Protocol):
    """Where a runtime records what it measured."""

    def put(self, namespace: str, name: str, value: float, unit: str, dims: Dims, /) -> None:
        """Record ``value`` of metric ``namespace``/``name`` with dimensions ``dims``."""


class MetricsPublisher(Flusher):
    """Buffers metric values and sends them with PutMetricData in the background, with the
    CloudWatch client ``client()`` returns (called from the flushing thread)."""

    thread_name = "mlpipe-metrics"
    failure = "could not publish metrics"
    sent = 0  # values sent so far
    calls = 0  # PutMetricData calls made
    _pending: list[tuple[_Key, float]]

    def put(
        self,
        namespace: str,
        name: str,
        value: float,
        unit: str,
        dimensions: Mapping[str, str],
    ) -> None:
        key = (namespace, name, tuple(sorted(dimensions.items())), unit, int(self.wall()))
        with self._lock:
            self._pending.append((key, float(value)))

    def flush(self) -> int:
        """Send everything recorded so far; the number of values sent."""
        with self._flushing:
            with self._lock:
                pending, self._pending = self._pending, []
            if not pending:
                return 0
            by_namespace: dict[str, list[dict[str, Any]]] = defaultdict(list)
            grouped: dict[_Key, Counter[float]] = defaultdict(Counter)
            for key, value in pending:
                grouped[key][value] += 1
            for (namespace, name, dims, unit, second), counts in grouped.items():
                items = sorted(counts.items())
                for start in range(0, len(items), MAX_VALUES):
                    chunk = items[start : start + MAX_VALUES]
                    by_namespace[namespace].append(
                        {
                            "MetricName": name,
                            "Dimensions": [{"Name": k, "Value": v} for k, v in dims],
                            "Timestamp": datetime.fromtimestamp(second, UTC),
                            "Unit": unit,
                            "Values": [v for v, _ in chunk],
                            "Counts": [float(c) for _, c in chunk],
                        }
                    )
            client = self.client()
            for namespace, data in by_namespace.items():
                for start in range(0, len(data), MAX_DATUMS):
                    client.put_metric_data(
                        Namespace=namespace, MetricData=data[start : start + MAX_DATUMS]
                    )
                    self.calls += 1
            self.sent += len(pending)
            return len(pending)
