"""Monitoring: the alert topic and its email subscription, the dashboard, and the alarms.

The topic is encrypted with the pipeline's key; its policy lets CloudWatch alarms, EventBridge
and the account publish, and refuses a publish without TLS. Every alarm notifies the topic
when it fires and when it recovers.

SageMaker publishes its invocation metrics (ModelLatency, Invocations, Invocation4XXErrors,
Invocation5XXErrors) only per EndpointName + VariantName: an alarm on the endpoint name alone
watches a metric that does not exist and never fires. So each variant has its own latency, 4XX
and 5XX alarm, and the thresholds of `monitoring.alarms` apply per variant; an alarm then also
says which variant (champion or challenger) misbehaves, which is what an A/B rollout needs.

The endpoint, functions, API, stream, table and state machine are named by their derived names
and ARNs, so monitoring stands alone: until the metrics an alarm watches exist, missing data
counts as not breaching and the alarm stays quiet.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from mlpipe.core.context import Context
from mlpipe.core.diff import Diff, policy, sync_tags, tags_from_list, tags_to_list
from mlpipe.core.errors import is_not_found
from mlpipe.core.resource import Observed, Outputs, Refs, Resource
from mlpipe.naming import Arns
from mlpipe.resources.kms import KEY

TOPIC = "sns:alerts"
SUBSCRIPTION = "sns:alert-email"
DASHBOARD = "cloudwatch:dashboard"

# The Lambda functions of the pipeline, by purpose (`Names.function(purpose)`).
FUNCTIONS = ("preprocess", "stream-processor")
# SageMaker reports ModelLatency in microseconds; the spec speaks milliseconds.
MICROSECONDS_PER_MS = 1000
PERCENTILE = re.compile(r"^p\d{1,2}(\.\d+)?$")


def _cloudwatch_arn(ctx: Context, resource: str, regional: bool = True) -> str:
    aws = ctx.aws
    region = aws.region if regional else ""
    return f"arn:{aws.partition}:cloudwatch:{region}:{aws.account}:{resource}"


# --- SNS ----------------------------------------------------------------------------------------


class Topic(Resource):
    kind = "sns"
    attributes = ("DisplayName", "KmsMasterKeyId", "Policy")

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, "alerts", ctx.names.alert_topic, depends_on=(KEY,))

    @property
    def arn(self) -> str:
        return Arns(self.ctx).topic

    def read(self) -> Observed | None:
        sns = self.client("sns")
        try:
            attributes = sns.get_topic_attributes(TopicArn=self.arn)["Attributes"]
        except ClientError as exc:
            if is_not_found(exc):
                return None
            raise
        tags = tags_from_list(sns.list_tags_for_resource(ResourceArn=self.arn).get("Tags"))
        state = {
            "DisplayName": attributes.get("DisplayName", ""),
            "KmsMasterKeyId": attributes.get("KmsMasterKeyId"),
            "Policy": policy(attributes.get("Policy")),
            "Tags": tags,
        }
        return Observed(state, {"arn": self.arn}, self.ctx.owns(tags))

    def desired(self, refs: Refs) -> dict[str, Any]:
        return {
            "DisplayName": f"mlpipe {self.ctx.names.pipeline_id} alerts",
            "KmsMasterKeyId": refs(KEY, "arn"),
            "Policy": policy(self._policy()),
            "Tags": self.tags,
        }

    def _policy(self) -> dict[str, Any]:
        aws, topic = self.ctx.aws, self.arn
        return {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "AlarmsAndEventsPublish",
                    "Effect": "Allow",
                    "Principal": {"Service": ["cloudwatch.amazonaws.com", "events.amazonaws.com"]},
                    "Action": "sns:Publish",
                    "Resource": topic,
                    "Condition": {"StringEquals": {"aws:SourceAccount": aws.account}},
                },
                {
                    # Principals of the account still need an IAM policy that allows it.
                    "Sid": "AccountPublishes",
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:{aws.partition}:iam::{aws.account}:root"},
                    "Action": "sns:Publish",
                    "Resource": topic,
                },
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "sns:Publish",
                    "Resource": topic,
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                },
            ],
        }

    @staticmethod
    def _value(attribute: str, value: Any) -> str:
        return json.dumps(value) if attribute == "Policy" else str(value)

    def create(self, desired: dict[str, Any]) -> Outputs:
        topic = self.client("sns").create_topic(
            Name=self.physical,
            Attributes={a: self._value(a, desired[a]) for a in self.attributes},
            Tags=tags_to_list(desired["Tags"]),
        )
        return {"arn": topic["TopicArn"]}

    def update(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> Outputs:
        sns = self.client("sns")
        for attribute in self.attributes:
            if changes.touches(attribute):
                sns.set_topic_attributes(
                    TopicArn=self.arn,
                    AttributeName=attribute,
                    AttributeValue=self._value(attribute, desired[attribute]),
                )
        if changes.touches("Tags"):
            sync_tags(
                observed.state["Tags"],
                desired["Tags"],
                lambda t: sns.tag_resource(ResourceArn=self.arn, Tags=tags_to_list(t)),
                lambda keys: sns.untag_resource(ResourceArn=self.arn, TagKeys=keys),
            )
        return observed.outputs

    def delete(self, observed: Observed) -> None:
        try:
            self.client("sns").delete_topic(TopicArn=self.arn)
        except ClientError as exc:
            if not is_not_found(exc):
                raise

    def warnings(self) -> list[str]:
        if self.ctx.spec.monitoring.alert_email is None:
            return ["no monitoring.alert_email: alarms notify a topic nobody is subscribed to"]
        return []


class EmailSubscription(Resource):
    """The spec's alert address on the topic.

    AWS lists a subscription that awaits its confirmation e-mail as `PendingConfirmation`: it
    counts as present, so apply never sends the confirmation request again. A subscription has
    no tags; it is mlpipe's when its topic is.
    """

    kind = "sns"
    replace_on = ("TopicArn", "Protocol", "Endpoint")

    def __init__(self, ctx: Context, email: str) -> None:
        super().__init__(ctx, "alert-email", email, depends_on=(TOPIC,))
        self.email = email

    def read(self) -> Observed | None:
        sns, topic = self.client("sns"), Arns(self.ctx).topic
        try:
            pages = sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic)
            subscriptions = [s for page in pages for s in page["Subscriptions"]]
        except ClientError as exc:
            if is_not_found(exc):
                return None
            raise
        found = next(
            (
                s
                for s in subscriptions
                if s["Protocol"] == "email" and s["Endpoint"].lower() == self.email.lower()
            ),
            None,
        )
        if found is None:
            return None
        tags = tags_from_list(sns.list_tags_for_resource(ResourceArn=topic).get("Tags"))
        state = {"TopicArn": topic, "Protocol": "email", "Endpoint": self.email}
        arn = found["SubscriptionArn"]
        outputs = {"arn": arn, "pending": arn == "PendingConfirmation"}
        return Observed(state, outputs, self.ctx.owns(tags))

    def desired(self, refs: Refs) -> dict[str, Any]:
        return {"TopicArn": refs(TOPIC, "arn"), "Protocol": "email", "Endpoint": self.email}

    def create(self, desired: dict[str, Any]) -> Outputs:
        arn = self.client("sns").subscribe(
            TopicArn=desired["TopicArn"],
            Protocol=desired["Protocol"],
            Endpoint=desired["Endpoint"],
            ReturnSubscriptionArn=True,
        )["SubscriptionArn"]
        self.ctx.progress(self.key, f"confirmation e-mail sent to {self.email}")
        return {"arn": arn, "pending": True}

    def delete(self, observed: Observed) -> None:
        if observed.outputs.get("pending"):
            # Unconfirmed subscriptions cannot be removed; AWS drops them after three days.
            return
        try:
            self.client("sns").unsubscribe(SubscriptionArn=observed.outputs["arn"])
        except ClientError as exc:
            if not is_not_found(exc):
                raise


# --- CloudWatch ---------------------------------------------------------------------------------


class CloudWatchResource(Resource):
    """An alarm or a dashboard: one put call writes the whole definition, tags go on with the
    first put only, and later tag changes go through TagResource/UntagResource."""

    kind = "cloudwatch"

    @property
    def arn(self) -> str:
        raise NotImplementedError

    def put(self, desired: dict[str, Any], tags: list[dict[str, str]] | None) -> None:
        raise NotImplementedError

    def _tags(self) -> dict[str, str]:
        cw = self.client("cloudwatch")
        return tags_from_list(cw.list_tags_for_resource(ResourceARN=self.arn).get("Tags"))

    def _outputs(self) -> Outputs:
        return {"name": self.physical, "arn": self.arn}

    def create(self, desired: dict[str, Any]) -> Outputs:
        self.put(desired, tags_to_list(desired["Tags"]))
        return self._outputs()

    def update(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> Outputs:
        cw = self.client("cloudwatch")
        if any(path != "Tags" for path in changes.paths()):
            self.put(desired, None)
        if changes.touches("Tags"):
            sync_tags(
                observed.state["Tags"],
                desired["Tags"],
                lambda t: cw.tag_resource(ResourceARN=self.arn, Tags=tags_to_list(t)),
                lambda keys: cw.untag_resource(ResourceARN=self.arn, TagKeys=keys),
            )
        return observed.outputs


@dataclass(frozen=True)
class AlarmRule:
    """One alarm of the pipeline: a metric, how it is aggregated, and when it breaches."""

    purpose: str
    summary: str
    namespace: str
    metric: str
    dimensions: tuple[tuple[str, str], ...]
    stat: str  # "Sum", "Maximum", … or a percentile such as "p99"
    threshold: float
    periods: int
    comparison: str

    def statistic(self) -> dict[str, str]:
        key = "ExtendedStatistic" if PERCENTILE.match(self.stat) else "Statistic"
        return {key: self.stat}


ABOVE = "GreaterThanThreshold"
AT_LEAST = "GreaterThanOrEqualToThreshold"


def alarm_rules(ctx: Context) -> list[AlarmRule]:
    """The pipeline's alarms, from `monitoring.alarms`, in a stable order."""
    names, limits = ctx.names, ctx.spec.monitoring.alarms
    rows: list[tuple[Any, ...]] = []
    for variant in (v.name for v in ctx.spec.endpoint.variants):
        dims = (("EndpointName", names.endpoint), ("VariantName", variant))
        rows += [
            (
                f"model-latency-p99-{variant}",
                f"p99 model latency of variant {variant} too high (threshold in microseconds)",
                "AWS/SageMaker",
                "ModelLatency",
                dims,
                "p99",
                # ModelLatency is reported in microseconds: 2000 ms is 2,000,000.
                limits.model_latency_p99_ms * MICROSECONDS_PER_MS,
                limits.model_latency_periods,
                ABOVE,
            ),
            (
                f"invocation-4xx-{variant}",
                f"too many 4XX answers from variant {variant}",
                "AWS/SageMaker",
                "Invocation4XXErrors",
                dims,
                "Sum",
                limits.invocation_4xx,
                1,
                ABOVE,
            ),
            (
                f"invocation-5xx-{variant}",
                f"5XX answers from variant {variant}",
                "AWS/SageMaker",
                "Invocation5XXErrors",
                dims,
                "Sum",
                limits.invocation_5xx,
                1,
                AT_LEAST,
            ),
        ]
    for purpose in FUNCTIONS:
        dims = (("FunctionName", names.function(purpose)),)
        rows += [
            (
                f"lambda-{metric.lower()}-{purpose}",
                f"{metric.lower()} of the {purpose} function",
                "AWS/Lambda",
                metric,
                dims,
                "Sum",
                threshold,
                1,
                AT_LEAST,
            )
            for metric, threshold in (
                ("Errors", limits.lambda_errors),
                ("Throttles", limits.lambda_throttles),
            )
        ]
    rows += [
        (
            "stream-iterator-age",
            "records wait too long in the inference stream (threshold in milliseconds)",
            "AWS/Kinesis",
            "GetRecords.IteratorAgeMilliseconds",
            (("StreamName", names.stream),),
            "Maximum",
            limits.iterator_age_ms,
            1,
            ABOVE,
        ),
        (
            "workflow-failures",
            "failed batch workflow executions",
            "AWS/States",
            "ExecutionsFailed",
            (("StateMachineArn", Arns(ctx).state_machine),),
            "Sum",
            limits.workflow_failures,
            1,
            AT_LEAST,
        ),
    ]
    return [AlarmRule(*row) for row in rows]


def alarm_key(purpose: str) -> str:
    return f"{CloudWatchResource.kind}:alarm-{purpose}"


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
        return _cloudwatch_arn(self.ctx, f"alarm:{self.physical}")

    def read(self) -> Observed | None:
        found = self.client("cloudwatch").describe_alarms(
            AlarmNames=[self.physical], AlarmTypes=["MetricAlarm"]
        )["MetricAlarms"]
        if not found:
            return None
        tags = self._tags()
        state = {**alarm_definition(found[0]), "Tags": tags}
        return Observed(state, self._outputs(), self.ctx.owns(tags))

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


def alarm_states(ctx: Context) -> list[dict[str, Any]]:
    """Each pipeline alarm's state (OK, ALARM, INSUFFICIENT_DATA, or MISSING), for `status`."""
    names = [ctx.names.alarm(rule.purpose) for rule in alarm_rules(ctx)]
    paginator = ctx.aws.client("cloudwatch").get_paginator("describe_alarms")
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(names), 100):  # describe_alarms takes at most 100 names
        pages = paginator.paginate(
            AlarmNames=names[start : start + 100], AlarmTypes=["MetricAlarm"]
        )
        found.update({a["AlarmName"]: a for page in pages for a in page["MetricAlarms"]})
    states = []
    for name in names:
        alarm = found.get(name)
        if alarm is None:
            states.append(
                {"name": name, "state": "MISSING", "reason": "not created yet", "updated": None}
            )
            continue
        updated = alarm.get("StateUpdatedTimestamp")
        states.append(
            {
                "name": name,
                "state": alarm["StateValue"],
                "reason": alarm.get("StateReason", ""),
                "updated": updated.isoformat() if updated else None,
            }
        )
    return states


# --- Dashboard ----------------------------------------------------------------------------------

Dimensions = tuple[tuple[str, str], ...]


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
                "alarms": [
                    _cloudwatch_arn(ctx, f"alarm:{names.alarm(r.purpose)}")
                    for r in alarm_rules(ctx)
                ],
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
        return _cloudwatch_arn(self.ctx, f"dashboard/{self.physical}", regional=False)

    def read(self) -> Observed | None:
        try:
            body = self.client("cloudwatch").get_dashboard(DashboardName=self.physical)
        except ClientError as exc:
            if is_not_found(exc, "ResourceNotFound"):
                return None
            raise
        tags = self._tags()
        state = {"Body": json.loads(body["DashboardBody"]), "Tags": tags}
        return Observed(state, self._outputs(), self.ctx.owns(tags))

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
        try:
            self.client("cloudwatch").delete_dashboards(DashboardNames=[self.physical])
        except ClientError as exc:
            if not is_not_found(exc, "ResourceNotFound"):
                raise


def resources(ctx: Context) -> list[Resource]:
    found: list[Resource] = [Topic(ctx)]
    email = ctx.spec.monitoring.alert_email
    if email is not None:
        found.append(EmailSubscription(ctx, email))
    found.append(Dashboard(ctx))
    found += [Alarm(ctx, rule) for rule in alarm_rules(ctx)]
    return found
