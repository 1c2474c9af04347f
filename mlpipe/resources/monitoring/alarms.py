"""The pipeline's alarms: a table of rules, one metric alarm per rule.

SageMaker publishes its invocation metrics (ModelLatency, Invocations, Invocation4XXErrors,
Invocation5XXErrors) only per EndpointName + VariantName: an alarm on the endpoint name alone
watches a metric that does not exist and never fires. So each variant has its own latency, 4XX
and 5XX alarm, and the thresholds of `monitoring.alarms` apply per variant; an alarm then also
says which variant (champion or challenger) misbehaves, which is what an A/B rollout needs.

Every alarm notifies the alert topic when it fires and when it recovers. Until the metrics an
alarm watches exist, missing data counts as not breaching and the alarm stays quiet.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from mlpipe.core.context import Context
from mlpipe.core.diff import Diff, tags_to_list
from mlpipe.core.resource import Observed, Outputs, Refs, Resource
from mlpipe.naming import Arns
from mlpipe.resources.monitoring.topic import TOPIC

# The Lambda functions of the pipeline, by purpose (`Names.function(purpose)`).
FUNCTIONS = ("preprocess", "stream-processor")
# SageMaker reports ModelLatency in microseconds; the spec speaks milliseconds.
MICROSECONDS_PER_MS = 1000
PERCENTILE = re.compile(r"^p\d{1,2}(\.\d+)?$")
ABOVE = "GreaterThanThreshold"
AT_LEAST = "GreaterThanOrEqualToThreshold"

Dimensions = tuple[tuple[str, str], ...]


def cloudwatch_arn(ctx: Context, resource: str, regional: bool = True) -> str:
    aws = ctx.aws
    region = aws.region if regional else ""
    return f"arn:{aws.partition}:cloudwatch:{region}:{aws.account}:{resource}"


class CloudWatchResource(Resource):
    """An alarm or a dashboard: one put call writes the whole definition, tags go on with the
    first put only (later tag changes go through the tagging API, `Resource.apply_changes`)."""

    kind = "cloudwatch"
    tagging = "cloudwatch"

    @property
    def arn(self) -> str:
        raise NotImplementedError

    def put(self, desired: dict[str, Any], tags: list[dict[str, str]] | None) -> None:
        raise NotImplementedError

    def observed(self, state: dict[str, Any]) -> Observed:
        tags = self.live_tags(self.arn)
        outputs = {"name": self.physical, "arn": self.arn}
        return Observed({**state, "Tags": tags}, outputs, self.ctx.owns(tags))

    def create(self, desired: dict[str, Any]) -> Outputs:
        self.put(desired, tags_to_list(desired["Tags"]))
        return {"name": self.physical, "arn": self.arn}

    def update(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> Outputs:
        self.put(desired, None)
        return observed.outputs


@dataclass(frozen=True)
class AlarmRule:
    """One alarm of the pipeline: a metric, how it is aggregated, and when it breaches."""

    purpose: str
    summary: str
    namespace: str
    metric: str
    dimensions: Dimensions
    stat: str  # "Sum", "Maximum", … or a percentile such as "p99"
    threshold: float
    periods: int = 1
    comparison: str = AT_LEAST

    def statistic(self) -> dict[str, str]:
        key = "ExtendedStatistic" if PERCENTILE.match(self.stat) else "Statistic"
        return {key: self.stat}


def alarm_rules(ctx: Context) -> list[AlarmRule]:
    """The pipeline's alarms, from `monitoring.alarms`, in a stable order."""
    names, limits = ctx.names, ctx.spec.monitoring.alarms
    rules: list[AlarmRule] = []
    for variant in (v.name for v in ctx.spec.endpoint.variants):
        dims = (("EndpointName", names.endpoint), ("VariantName", variant))
        client_errors = AlarmRule(
            purpose=f"invocation-4xx-{variant}",
            summary=f"too many 4XX answers from variant {variant}",
            namespace="AWS/SageMaker",
            metric="Invocation4XXErrors",
            dimensions=dims,
            stat="Sum",
            threshold=limits.invocation_4xx,
            comparison=ABOVE,
        )
        rules += [
            AlarmRule(
                purpose=f"model-latency-p99-{variant}",
                summary=(
                    f"p99 model latency of variant {variant} too high (threshold in microseconds)"
                ),
                namespace="AWS/SageMaker",
                metric="ModelLatency",
                dimensions=dims,
                stat="p99",
                # ModelLatency is reported in microseconds: 2000 ms is 2,000,000.
                threshold=limits.model_latency_p99_ms * MICROSECONDS_PER_MS,
                periods=limits.model_latency_periods,
                comparison=ABOVE,
            ),
            client_errors,
            replace(
                client_errors,
                purpose=f"invocation-5xx-{variant}",
                summary=f"5XX answers from variant {variant}",
                metric="Invocation5XXErrors",
                threshold=limits.invocation_5xx,
                comparison=AT_LEAST,
            ),
        ]
    for purpose in FUNCTIONS:
        rules += [
            AlarmRule(
                purpose=f"lambda-{metric.lower()}-{purpose}",
                summary=f"{metric.lower()} of the {purpose} function",
                namespace="AWS/Lambda",
                metric=metric,
                dimensions=(("FunctionName", names.function(purpose)),),
                stat="Sum",
                threshold=threshold,
            )
            for metric, threshold in (
                ("Errors", limits.lambda_errors),
                ("Throttles", limits.lambda_throttles),
            )
        ]
    rules += [
        AlarmRule(
            purpose="stream-iterator-age",
            summary="records wait too long in the inference stream (threshold in milliseconds)",
            namespace="AWS/Kinesis",
            metric="GetRecords.IteratorAgeMilliseconds",
            dimensions=(("StreamName", names.stream),),
            stat="Maximum",
            threshold=limits.iterator_age_ms,
            comparison=ABOVE,
        ),
        AlarmRule(
            purpose="workflow-failures",
            summary="failed batch workflow executions",
            namespace="AWS/States",
            metric="ExecutionsFailed",
            dimensions=(("StateMachineArn", Arns(ctx).state_machine),),
            stat="Sum",
            threshold=limits.workflow_failures,
        ),
    ]
    return rules


def alarm_arn(ctx: Context, rule: AlarmRule) -> str:
    return cloudwatch_arn(ctx, f"alarm:{ctx.names.alarm(rule.purpose)}")


# Everything put_metric_alarm takes besides AlarmName and Tags; the rest of describe_alarms'
# answer (ARN, state, timestamps) is read-only.
ALARM_FIELDS = (
    "AlarmDescription",
    "ActionsEnabled",
    "OKActions",
    "AlarmActions",
    "InsufficientDataActions",
    "MetricName",
    "Namespace",
    "Statistic",
    "ExtendedStatistic",
    "Dimensions",
    "Period",
    "Unit",
    "EvaluationPeriods",
    "DatapointsToAlarm",
    "Threshold",
    "ComparisonOperator",
    "TreatMissingData",
    "EvaluateLowSampleCountPercentile",
    "Metrics",
    "ThresholdMetricId",
)
ACTIONS = ("OKActions", "AlarmActions", "InsufficientDataActions")


def alarm_definition(alarm: Mapping[str, Any]) -> dict[str, Any]:
    """A metric alarm from describe_alarms in the shape put_metric_alarm takes, normalised."""
    out = {k: alarm[k] for k in ALARM_FIELDS if alarm.get(k) not in (None, [])}
    for key in ACTIONS:
        out[key] = sorted(alarm.get(key) or [])
    out["Dimensions"] = sorted(alarm.get("Dimensions") or [], key=lambda d: d["Name"])
    if "Threshold" in out:
        out["Threshold"] = float(out["Threshold"])
    return out


class Alarm(CloudWatchResource):
    def __init__(self, ctx: Context, rule: AlarmRule) -> None:
        super().__init__(
            ctx, f"alarm-{rule.purpose}", ctx.names.alarm(rule.purpose), depends_on=(TOPIC,)
        )
        self.rule = rule

    @property
    def arn(self) -> str:
        return alarm_arn(self.ctx, self.rule)

    def read(self) -> Observed | None:
        found = self.client("cloudwatch").describe_alarms(
            AlarmNames=[self.physical], AlarmTypes=["MetricAlarm"]
        )["MetricAlarms"]
        return self.observed(alarm_definition(found[0])) if found else None

    def desired(self, refs: Refs) -> dict[str, Any]:
        rule, topic = self.rule, refs(TOPIC, "arn")
        period = self.ctx.spec.monitoring.period_seconds
        return {
            # No values in the description: a threshold change is a change of Threshold alone.
            "AlarmDescription": (
                f"{rule.summary}. Managed by mlpipe ({self.ctx.names.pipeline_id})."
            ),
            "ActionsEnabled": True,
            "OKActions": [topic],
            "AlarmActions": [topic],
            "InsufficientDataActions": [],
            "MetricName": rule.metric,
            "Namespace": rule.namespace,
            **rule.statistic(),
            "Dimensions": [{"Name": n, "Value": v} for n, v in sorted(rule.dimensions)],
            "Period": period,
            "EvaluationPeriods": rule.periods,
            "DatapointsToAlarm": rule.periods,
            "Threshold": float(rule.threshold),
            "ComparisonOperator": rule.comparison,
            # No datapoints means no traffic (or no errors): not a breach.
            "TreatMissingData": "notBreaching",
            "Tags": self.tags,
        }

    def put(self, desired: dict[str, Any], tags: list[dict[str, str]] | None) -> None:
        params = {k: v for k, v in desired.items() if k != "Tags"}
        if tags is not None:
            params["Tags"] = tags  # only honoured when the alarm is created
        self.client("cloudwatch").put_metric_alarm(AlarmName=self.physical, **params)

    def delete(self, observed: Observed) -> None:
        self.client("cloudwatch").delete_alarms(AlarmNames=[self.physical])
