"""The pipeline's dashboard: a header, one chart per concern, and the alarms' states."""

from __future__ import annotations

import json
from typing import Any

from mlpipe.core.context import Context
from mlpipe.core.find import forget
from mlpipe.core.resource import Observed, Refs
from mlpipe.naming import Arns
from mlpipe.resources.monitoring.alarms import (
    FUNCTIONS,
    CloudWatchResource,
    Dimensions,
    alarm_arn,
    alarm_rules,
    cloudwatch_arn,
)

DASHBOARD = "cloudwatch:dashboard"


def _metric(namespace: str, metric: str, dims: Dimensions, stat: str, label: str) -> list[Any]:
    """One line of a metric widget: namespace, name, dimension pairs, then its options."""
    return [
        namespace,
        metric,
        *(part for pair in dims for part in pair),
        {"stat": stat, "label": label},
    ]


def dashboard_body(ctx: Context) -> dict[str, Any]:
    """The dashboard as a dict: a header, one chart per concern, and the alarms' states."""
    names, spec = ctx.names, ctx.spec
    variants = [v.name for v in spec.endpoint.variants]
    functions = [(purpose, names.function(purpose)) for purpose in FUNCTIONS]
    api: Dimensions = (("ApiName", names.api), ("Stage", spec.api.stage))
    table: Dimensions = (("TableName", names.predictions_table),)
    workflow: Dimensions = (("StateMachineArn", Arns(ctx).state_machine),)

    def sagemaker(metric: str, variant: str, stat: str, label: str) -> list[Any]:
        dims = (("EndpointName", names.endpoint), ("VariantName", variant))
        return _metric("AWS/SageMaker", metric, dims, stat, label)

    def function(metric: str, fn: str, stat: str, label: str) -> list[Any]:
        return _metric("AWS/Lambda", metric, (("FunctionName", fn),), stat, label)

    charts: list[tuple[str, list[list[Any]]]] = [
        (
            "Model latency by variant (microseconds)",
            [
                sagemaker("ModelLatency", v, stat, f"{v} {stat}")
                for v in variants
                for stat in ("p50", "p99")
            ],
        ),
        ("Invocations by variant", [sagemaker("Invocations", v, "Sum", v) for v in variants]),
        (
            "Invocation errors by variant",
            [
                sagemaker(f"Invocation{code}Errors", v, "Sum", f"{v} {code}")
                for v in variants
                for code in ("4XX", "5XX")
            ],
        ),
        (
            "Lambda errors and throttles",
            [
                function(metric, fn, "Sum", f"{purpose} {metric.lower()}")
                for purpose, fn in functions
                for metric in ("Errors", "Throttles")
            ],
        ),
        (
            "Lambda duration (ms)",
            [
                function("Duration", fn, stat, f"{purpose} {stat}")
                for purpose, fn in functions
                for stat in ("Average", "p99")
            ],
        ),
        (
            "API latency (ms)",
            [_metric("AWS/ApiGateway", "Latency", api, s, s) for s in ("p50", "p99")],
        ),
        (
            "API cache hits and misses",
            [
                _metric("AWS/ApiGateway", "CacheHitCount", api, "Sum", "hits"),
                _metric("AWS/ApiGateway", "CacheMissCount", api, "Sum", "misses"),
            ],
        ),
        (
            "Inference stream iterator age (ms)",
            [
                _metric(
                    "AWS/Kinesis",
                    "GetRecords.IteratorAgeMilliseconds",
                    (("StreamName", names.stream),),
                    "Maximum",
                    "oldest record",
                )
            ],
        ),
        (
            "Predictions table throttles",
            [
                _metric("AWS/DynamoDB", f"{op}ThrottleEvents", table, "Sum", op.lower())
                for op in ("Read", "Write")
            ],
        ),
        (
            "Batch workflow executions",
            [
                _metric("AWS/States", f"Executions{outcome}", workflow, "Sum", outcome.lower())
                for outcome in ("Failed", "TimedOut", "Aborted")
            ],
        ),
    ]
    widgets: list[dict[str, Any]] = [
        {
            "type": "text",
            "x": 0,
            "y": 0,
            "width": 24,
            "height": 2,
            "properties": {
                "markdown": (
                    f"# {names.pipeline_id}\n"
                    "Managed by mlpipe from the pipeline spec: `mlpipe apply` overwrites "
                    "changes made here."
                )
            },
        }
    ]
    for index, (title, metrics) in enumerate(charts):
        widgets.append(
            {
                "type": "metric",
                "x": 12 * (index % 2),
                "y": 2 + 6 * (index // 2),
                "width": 12,
                "height": 6,
                "properties": {
                    "title": title,
                    "region": ctx.aws.region,
                    "view": "timeSeries",
                    "stacked": False,
                    "period": spec.monitoring.period_seconds,
                    "metrics": metrics,
                },
            }
        )
    widgets.append(
        {
            "type": "alarm",
            "x": 0,
            "y": 2 + 6 * ((len(charts) + 1) // 2),
            "width": 24,
            "height": 6,
            "properties": {
                "title": "Alarms",
                "alarms": [alarm_arn(ctx, rule) for rule in alarm_rules(ctx)],
            },
        }
    )
    return {"widgets": widgets}


class Dashboard(CloudWatchResource):
    exact = ("Tags", "Body")

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, "dashboard", ctx.names.dashboard)

    @property
    def arn(self) -> str:
        # Dashboards are global: their ARN has no region.
        return cloudwatch_arn(self.ctx, f"dashboard/{self.physical}", regional=False)

    def read(self) -> Observed | None:
        found = self.find("cloudwatch", "get_dashboard", DashboardName=self.physical)
        return self.observed({"Body": json.loads(found["DashboardBody"])}) if found else None

    def desired(self, refs: Refs) -> dict[str, Any]:
        return {"Body": dashboard_body(self.ctx), "Tags": self.tags}

    def put(self, desired: dict[str, Any], tags: list[dict[str, str]] | None) -> None:
        params: dict[str, Any] = {
            "DashboardName": self.physical,
            "DashboardBody": json.dumps(desired["Body"]),
        }
        if tags is not None:
            params["Tags"] = tags  # only honoured when the dashboard is created
        answer = self.client("cloudwatch").put_dashboard(**params)
        for message in answer.get("DashboardValidationMessages") or []:
            self.ctx.progress(self.key, f"dashboard: {message.get('Message', message)}")

    def delete(self, observed: Observed) -> None:
        forget(self.client("cloudwatch"), "delete_dashboards", DashboardNames=[self.physical])
