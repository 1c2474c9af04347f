"""A snapshot of a rollout, from CloudWatch, SageMaker and Parameter Store: what `mlpipe watch`
shows.

Per variant: the version it serves and its weight (the deployment state), its live weight and
instance count (DescribeEndpoint), and from CloudWatch over the last ``window`` seconds its
share of the endpoint's invocations, p50/p99 model latency, 4XX/5XX answers, and small series
of invocations and p99 latency per ``period``. Then the pipeline's alarms and their states, the
deployment's last operation (a canary step, say) and the operation lock when one is held. One
GetMetricData call gathers all the figures.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from mlpipe.context import PipelineContext
from mlpipe.core.find import find
from mlpipe.ops.lock import holders
from mlpipe.ops.registry import active_version
from mlpipe.ops.state import load_state
from mlpipe.resources.monitoring import MICROSECONDS_PER_MS, alarm_states

__all__ = ["SPARK", "snapshot", "sparkline"]

SPARK = "▁▂▃▄▅▆▇█"
# Per variant: (query id, metric, statistic, whole window or per period)
QUERIES = (
    ("inv", "Invocations", "Sum", True),
    ("p50", "ModelLatency", "p50", True),
    ("p99", "ModelLatency", "p99", True),
    ("e4", "Invocation4XXErrors", "Sum", True),
    ("e5", "Invocation5XXErrors", "Sum", True),
    ("sinv", "Invocations", "Sum", False),
    ("sp99", "ModelLatency", "p99", False),
)


def sparkline(values: list[float | None]) -> str:
    """Values as block characters, lowest to highest; a gap for a missing one."""
    known = [v for v in values if v is not None]
    if not known:
        return ""
    low, high = min(known), max(known)
    span = high - low
    out = []
    for value in values:
        if value is None:
            out.append(" ")
        else:
            level = 0 if span == 0 else round((value - low) / span * (len(SPARK) - 1))
            out.append(SPARK[level if high > 0 else 0])
    return "".join(out)


def _metric_queries(
    ctx: PipelineContext, variants: list[str], window: int, period: int
) -> list[dict[str, Any]]:
    queries = []
    for index, variant in enumerate(variants):
        dims = [
            {"Name": "EndpointName", "Value": ctx.names.endpoint},
            {"Name": "VariantName", "Value": variant},
        ]
        for key, metric, stat, whole in QUERIES:
            queries.append(
                {
                    "Id": f"{key}{index}",
                    "MetricStat": {
                        "Metric": {
                            "Namespace": "AWS/SageMaker",
                            "MetricName": metric,
                            "Dimensions": dims,
                        },
                        "Period": window if whole else period,
                        "Stat": stat,
                    },
                    "ReturnData": True,
                }
            )
    return queries


def _series(
    result: dict[str, Any], start: datetime, period: int, buckets: int
) -> list[float | None]:
    """A query's values in ``buckets`` periods from ``start``, None where there was no data."""
    out: list[float | None] = [None] * buckets
    for stamp, value in zip(result.get("Timestamps", []), result.get("Values", []), strict=False):
        index = int((stamp - start).total_seconds() // period)
        if 0 <= index < buckets:
            out[index] = (out[index] or 0.0) + value if "inv" in result["Id"] else value
    return out


def snapshot(
    ctx: PipelineContext, *, window: int = 300, period: int = 60, now: datetime | None = None
) -> dict[str, Any]:
    """Everything `mlpipe watch` shows, as plain data (JSON-ready)."""
    now = now or datetime.now(UTC)
    state = load_state(ctx)
    sagemaker = ctx.aws.client("sagemaker")
    endpoint = find(sagemaker, "describe_endpoint", EndpointName=ctx.names.endpoint) or {}
    live = {v["VariantName"]: v for v in endpoint.get("ProductionVariants") or []}
    configured = {v.name: v for v in state.variants} if state else {}
    names = list(dict.fromkeys([*configured, *live]))
    buckets = max(1, window // period)
    end = now.replace(microsecond=0)
    start = end - timedelta(seconds=buckets * period)
    results: dict[str, dict[str, Any]] = {}
    if names:
        answer = ctx.aws.client("cloudwatch").get_metric_data(
            MetricDataQueries=_metric_queries(ctx, names, buckets * period, period),
            StartTime=start,
            EndTime=end,
        )
        results = {r["Id"]: r for r in answer.get("MetricDataResults", [])}

    def total(key: str) -> float | None:
        values = results.get(key, {}).get("Values") or []
        return float(sum(values)) if values else None

    def latest(key: str) -> float | None:
        values = results.get(key, {}).get("Values") or []
        return float(values[0]) / MICROSECONDS_PER_MS if values else None

    invocations = {n: total(f"inv{i}") or 0.0 for i, n in enumerate(names)}
    all_invocations = sum(invocations.values())
    total_weight = sum(float(v.get("CurrentWeight", 0)) for v in live.values()) or 1.0
    variants = []
    for index, name in enumerate(names):
        spec, running = configured.get(name), live.get(name, {})
        p99_series = _series(results.get(f"sp99{index}", {}), start, period, buckets)
        invocation_series = _series(results.get(f"sinv{index}", {}), start, period, buckets)
        variants.append(
            {
                "name": name,
                "version": spec.version if spec else None,
                "weight": spec.weight if spec else None,
                "live_weight_percent": round(
                    100 * float(running.get("CurrentWeight", 0)) / total_weight, 1
                ),
                "instances": running.get("CurrentInstanceCount"),
                "invocations": int(invocations[name]),
                "share_percent": (
                    round(100 * invocations[name] / all_invocations, 1) if all_invocations else None
                ),
                "p50_ms": latest(f"p50{index}"),
                "p99_ms": latest(f"p99{index}"),
                "errors_4xx": int(total(f"e4{index}") or 0),
                "errors_5xx": int(total(f"e5{index}") or 0),
                "invocations_series": invocation_series,
                "p99_ms_series": [
                    None if v is None else v / MICROSECONDS_PER_MS for v in p99_series
                ],
            }
        )
    return {
        "time": now.isoformat(timespec="seconds"),
        "window_seconds": buckets * period,
        "period_seconds": period,
        "endpoint": {
            "name": ctx.names.endpoint,
            "status": endpoint.get("EndpointStatus", "MISSING"),
        },
        "active_version": active_version(ctx),
        "deployment": {
            "champion": state.champion if state else None,
            "challenger": state.challenger if state else None,
            "operation": state.operation if state else None,
            "lock": next(iter(holders(ctx)), None),
        },
        "variants": variants,
        "alarms": alarm_states(ctx),
    }
