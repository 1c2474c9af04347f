"""Alert topic, subscription, dashboard and alarms on moto."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from moto.sns.models import sns_backends

from mlpipe.core.context import Context
from mlpipe.core.executor import Report, execute
from mlpipe.core.plan import Action, plan_apply, plan_destroy
from mlpipe.core.resource import Resource
from mlpipe.resources import kms, monitoring
from mlpipe.resources.monitoring import (
    DASHBOARD,
    SUBSCRIPTION,
    TOPIC,
    Alarm,
    alarm_definition,
    alarm_states,
)
from tests.support import Shared, build_once, converge, four_step

REGION = "us-east-1"
ACCOUNT = "123456789012"
VARIANTS = ("ModelA", "ModelB")
FUNCTIONS = ("preprocess", "stream-processor")
STATES = f"arn:aws:states:{REGION}:{ACCOUNT}"


def stack(ctx: Context) -> list[Resource]:
    """Monitoring and the key it encrypts the topic with."""
    return [*kms.resources(ctx), *monitoring.resources(ctx)]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Shared[Report]:
    return build_once(tmp_path_factory.mktemp("built"), lambda ctx: converge(stack(ctx)))


@pytest.fixture
def applied(ctx: Context, built: Shared[Report]) -> Context:
    """The stack applied: a copy of the account one converge built for the module."""
    built.restore()
    return ctx


def test_four_step(ctx: Context) -> None:
    """The idempotency check, once: the other tests start from `applied` (one converge)."""
    four_step(ctx, stack(ctx))


def client(service: str) -> Any:
    return boto3.client(service, region_name=REGION)


def key_arn(ctx: Context) -> str:
    return client("kms").describe_key(KeyId=ctx.names.kms_alias)["KeyMetadata"]["Arn"]


def topic_arn(ctx: Context) -> str:
    return f"arn:aws:sns:{REGION}:{ACCOUNT}:{ctx.names.alert_topic}"


def alarms(ctx: Context) -> dict[str, dict[str, Any]]:
    names = [ctx.names.alarm(r.purpose) for r in monitoring.alarm_rules(ctx)]
    found = client("cloudwatch").describe_alarms(AlarmNames=names)["MetricAlarms"]
    return {a["AlarmName"]: a for a in found}


def alarm_key(ctx: Context, purpose: str) -> str:
    """The plan key of the alarm of `purpose`, as the product builds it."""
    found = monitoring.resources(ctx)
    return next(r.key for r in found if isinstance(r, Alarm) and r.rule.purpose == purpose)


def with_alarm_limits(ctx: Context, **limits: Any) -> None:
    spec = ctx.spec
    thresholds = spec.monitoring.alarms.model_copy(update=limits)
    ctx.spec = spec.model_copy(
        update={"monitoring": spec.monitoring.model_copy(update={"alarms": thresholds})}
    )


def test_topic_is_encrypted_tls_only_and_subscribed(applied: Context) -> None:
    sns, arn = client("sns"), topic_arn(applied)
    attributes = sns.get_topic_attributes(TopicArn=arn)["Attributes"]
    assert attributes["KmsMasterKeyId"] == key_arn(applied)
    statements = {s["Sid"]: s for s in json.loads(attributes["Policy"])["Statement"]}
    publishers = statements["AlarmsAndEventsPublish"]
    assert sorted(publishers["Principal"]["Service"]) == [
        "cloudwatch.amazonaws.com",
        "events.amazonaws.com",
    ]
    assert publishers["Action"] == ["sns:Publish"] and publishers["Resource"] == [arn]
    assert publishers["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}
    assert statements["AccountPublishes"]["Principal"] == {"AWS": [f"arn:aws:iam::{ACCOUNT}:root"]}
    deny = statements["DenyInsecureTransport"]
    assert deny["Effect"] == "Deny" and deny["Principal"] == "*"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    (subscription,) = sns.list_subscriptions_by_topic(TopicArn=arn)["Subscriptions"]
    assert (subscription["Protocol"], subscription["Endpoint"]) == ("email", "team@example.com")
    tags = {t["Key"]: t["Value"] for t in sns.list_tags_for_resource(ResourceArn=arn)["Tags"]}
    assert tags["mlpipe:pipeline"] == "ml-pipeline-prod" and tags["mlpipe:resource"] == TOPIC


def metric_lines(body: dict[str, Any]) -> list[tuple[str, str, dict[str, str], str]]:
    """(namespace, metric, dimensions, stat) of every metric line of the dashboard."""
    lines = []
    for widget in body["widgets"]:
        for line in widget["properties"].get("metrics", []):
            *parts, options = line
            namespace, metric, *dims = parts
            lines.append(
                (namespace, metric, dict(zip(dims[::2], dims[1::2], strict=True)), options["stat"])
            )
    return lines


def test_dashboard_shows_every_concern(applied: Context) -> None:
    cw, names = client("cloudwatch"), applied.names
    board = cw.get_dashboard(DashboardName=names.dashboard)
    body = json.loads(board["DashboardBody"])
    lines = metric_lines(body)
    shown = {(namespace, metric) for namespace, metric, _, _ in lines}
    assert {
        ("AWS/SageMaker", "ModelLatency"),
        ("AWS/SageMaker", "Invocations"),
        ("AWS/SageMaker", "Invocation4XXErrors"),
        ("AWS/SageMaker", "Invocation5XXErrors"),
        ("AWS/Lambda", "Errors"),
        ("AWS/Lambda", "Duration"),
        ("AWS/Lambda", "Throttles"),
        ("AWS/ApiGateway", "Latency"),
        ("AWS/ApiGateway", "CacheHitCount"),
        ("AWS/ApiGateway", "CacheMissCount"),
        ("AWS/Kinesis", "GetRecords.IteratorAgeMilliseconds"),
        ("AWS/DynamoDB", "ReadThrottleEvents"),
        ("AWS/DynamoDB", "WriteThrottleEvents"),
        ("AWS/States", "ExecutionsFailed"),
    } <= shown
    latency = {
        (dims["VariantName"], stat)
        for namespace, metric, dims, stat in lines
        if metric == "ModelLatency" and dims["EndpointName"] == names.endpoint
    }
    assert latency == {(v, s) for v in VARIANTS for s in ("p50", "p99")}
    invocations = {dims["VariantName"] for _, metric, dims, _ in lines if metric == "Invocations"}
    assert invocations == set(VARIANTS)
    lambda_names = {dims["FunctionName"] for ns, _, dims, _ in lines if ns == "AWS/Lambda"}
    assert lambda_names == {names.function(p) for p in FUNCTIONS}
    api = {(d["ApiName"], d["Stage"]) for ns, _, d, _ in lines if ns == "AWS/ApiGateway"}
    assert api == {(names.api, "prod")}
    (alarm_widget,) = [w for w in body["widgets"] if w["type"] == "alarm"]
    assert sorted(alarm_widget["properties"]["alarms"]) == sorted(
        a["AlarmArn"] for a in alarms(applied).values()
    )
    arn = board["DashboardArn"]
    tags = {t["Key"]: t["Value"] for t in cw.list_tags_for_resource(ResourceARN=arn)["Tags"]}
    assert tags["mlpipe:resource"] == DASHBOARD


def test_every_alarm_watches_its_metric_and_notifies_the_topic(applied: Context) -> None:
    names, topic = applied.names, topic_arn(applied)
    found = alarms(applied)
    endpoint = names.endpoint

    def dims(alarm: dict[str, Any]) -> dict[str, str]:
        return {d["Name"]: d["Value"] for d in alarm["Dimensions"]}

    expected: dict[str, tuple[str, str, dict[str, str], str, float, int, str]] = {}
    for v in VARIANTS:
        variant = {"EndpointName": endpoint, "VariantName": v}
        expected[f"model-latency-p99-{v}"] = (
            "AWS/SageMaker",
            "ModelLatency",
            variant,
            "p99",
            2_000_000.0,  # 2 s in microseconds
            2,
            "GreaterThanThreshold",
        )
        expected[f"invocation-4xx-{v}"] = (
            "AWS/SageMaker",
            "Invocation4XXErrors",
            variant,
            "Sum",
            50.0,
            1,
            "GreaterThanThreshold",
        )
        expected[f"invocation-5xx-{v}"] = (
            "AWS/SageMaker",
            "Invocation5XXErrors",
            variant,
            "Sum",
            1.0,
            1,
            "GreaterThanOrEqualToThreshold",
        )
    for p in FUNCTIONS:
        for metric in ("Errors", "Throttles"):
            expected[f"lambda-{metric.lower()}-{p}"] = (
                "AWS/Lambda",
                metric,
                {"FunctionName": names.function(p)},
                "Sum",
                1.0,
                1,
                "GreaterThanOrEqualToThreshold",
            )
    expected["stream-iterator-age"] = (
        "AWS/Kinesis",
        "GetRecords.IteratorAgeMilliseconds",
        {"StreamName": names.stream},
        "Maximum",
        60_000.0,
        1,
        "GreaterThanThreshold",
    )
    expected["workflow-failures"] = (
        "AWS/States",
        "ExecutionsFailed",
        {"StateMachineArn": f"{STATES}:stateMachine:{names.state_machine}"},
        "Sum",
        1.0,
        1,
        "GreaterThanOrEqualToThreshold",
    )
    assert set(found) == {names.alarm(p) for p in expected}
    for purpose, (namespace, metric, dimensions, stat, threshold, periods, op) in expected.items():
        alarm = found[names.alarm(purpose)]
        assert (alarm["Namespace"], alarm["MetricName"], dims(alarm)) == (
            namespace,
            metric,
            dimensions,
        ), purpose
        assert alarm.get("ExtendedStatistic", alarm.get("Statistic")) == stat, purpose
        assert (alarm["Threshold"], alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (
            threshold,
            periods,
            periods,
        ), purpose
        assert alarm["ComparisonOperator"] == op, purpose
        assert alarm["Period"] == 300
        assert alarm["AlarmActions"] == [topic] and alarm["OKActions"] == [topic]
        assert alarm["ActionsEnabled"] and alarm["TreatMissingData"] == "notBreaching"
    latency = found[names.alarm("model-latency-p99-ModelA")]
    assert "Statistic" not in latency
    tags = client("cloudwatch").list_tags_for_resource(ResourceARN=latency["AlarmArn"])["Tags"]
    assert {
        "Key": "mlpipe:resource",
        "Value": alarm_key(applied, "model-latency-p99-ModelA"),
    } in tags


def test_a_threshold_change_rewrites_exactly_that_alarm_and_latency_is_in_microseconds(
    applied: Context,
) -> None:
    with_alarm_limits(applied, workflow_failures=3)
    plan = plan_apply(stack(applied))
    assert {s.key: s.diff.paths() for s in plan.changes} == {
        alarm_key(applied, "workflow-failures"): ["Threshold"]
    }
    applied.aws.log.reset()
    assert execute(plan).ok
    assert applied.aws.log.writes() == ["cloudwatch:PutMetricAlarm"]
    assert alarms(applied)[applied.names.alarm("workflow-failures")]["Threshold"] == 3.0
    assert not plan_apply(stack(applied)).changes

    with_alarm_limits(applied, model_latency_p99_ms=1500)
    plan = plan_apply(stack(applied))
    changes = {s.key: [(c.path, c.after) for c in s.diff.changes] for s in plan.changes}
    assert changes == {
        alarm_key(applied, f"model-latency-p99-{v}"): [("Threshold", 1_500_000.0)] for v in VARIANTS
    }


def test_tags_go_on_at_create_and_alarm_states_report_each_alarm(ctx: Context) -> None:
    before = alarm_states(ctx)
    assert len(before) == 12 and {s["state"] for s in before} == {"MISSING"}
    converge(stack(ctx))
    tagging = [c for c in ctx.aws.log.calls if c.split(":")[1] in ("TagResource", "TagQueue")]
    assert tagging == []
    name = ctx.names.alarm("invocation-5xx-ModelB")
    client("cloudwatch").set_alarm_state(
        AlarmName=name, StateValue="ALARM", StateReason="5XX answers from ModelB"
    )
    states = {s["name"]: s for s in alarm_states(ctx)}
    assert states[name]["state"] == "ALARM"
    assert states[name]["reason"] == "5XX answers from ModelB"
    assert states[name]["updated"]
    assert all(s["state"] != "ALARM" for n, s in states.items() if n != name)
    assert list(states) == [ctx.names.alarm(r.purpose) for r in monitoring.alarm_rules(ctx)]


def test_a_pending_subscription_counts_as_present(applied: Context) -> None:
    # AWS lists an unconfirmed e-mail subscription as PendingConfirmation; moto confirms at once.
    backend = sns_backends[ACCOUNT][REGION]
    for subscription in backend.subscriptions.values():
        subscription.arn = "PendingConfirmation"
    plan = plan_apply(stack(applied))
    step = next(s for s in plan.steps if s.key == SUBSCRIPTION)
    assert step.action is Action.NOOP and step.observed.outputs["pending"] is True
    applied.aws.log.reset()
    assert execute(plan).ok
    assert applied.aws.log.writes() == []


def test_no_alert_email_means_no_subscription(ctx: Context) -> None:
    ctx.spec = ctx.spec.model_copy(
        update={"monitoring": ctx.spec.monitoring.model_copy(update={"alert_email": None})}
    )
    resources = stack(ctx)
    assert SUBSCRIPTION not in {r.key for r in resources}
    plan = plan_apply(resources)
    topic = next(s for s in plan.steps if s.key == TOPIC)
    assert any("alert_email" in note for note in topic.notes)


def test_drift_is_shown_and_repaired(applied: Context) -> None:
    cw, sns, names = client("cloudwatch"), client("sns"), applied.names
    arn = topic_arn(applied)
    sns.set_topic_attributes(TopicArn=arn, AttributeName="Policy", AttributeValue="{}")
    latency = names.alarm("model-latency-p99-ModelB")
    live = alarm_definition(alarms(applied)[latency])
    cw.put_metric_alarm(AlarmName=latency, **{**live, "Threshold": 9e9, "OKActions": []})
    cw.put_dashboard(DashboardName=names.dashboard, DashboardBody=json.dumps({"widgets": []}))
    resources = stack(applied)
    plan = plan_apply(resources)
    assert {s.key: s.diff.paths() for s in plan.changes} == {
        TOPIC: ["Policy.Statement"],
        alarm_key(applied, "model-latency-p99-ModelB"): ["OKActions", "Threshold"],
        DASHBOARD: ["Body"],
    }
    applied.aws.log.reset()
    assert execute(plan).ok
    assert sorted(applied.aws.log.writes()) == [
        "cloudwatch:PutDashboard",
        "cloudwatch:PutMetricAlarm",
        "sns:SetTopicAttributes",
    ]
    assert not plan_apply(resources).changes
    body = json.loads(cw.get_dashboard(DashboardName=names.dashboard)["DashboardBody"])
    assert body == monitoring.dashboard_body(applied)


def test_tag_drift_uses_the_tagging_apis(applied: Context) -> None:
    cw, names = client("cloudwatch"), applied.names
    board = cw.get_dashboard(DashboardName=names.dashboard)["DashboardArn"]
    cw.tag_resource(ResourceARN=board, Tags=[{"Key": "stray", "Value": "1"}])
    applied.spec = applied.spec.model_copy(update={"tags": {**applied.spec.tags, "Team": "ml"}})
    plan = plan_apply(stack(applied))
    assert {p for s in plan.changes for p in s.diff.paths()} == {"Tags"}
    applied.aws.log.reset()
    assert execute(plan).ok
    writes = applied.aws.log.writes()
    assert "cloudwatch:PutMetricAlarm" not in writes and "cloudwatch:PutDashboard" not in writes
    assert writes.count("cloudwatch:UntagResource") == 1
    tags = {t["Key"]: t["Value"] for t in cw.list_tags_for_resource(ResourceARN=board)["Tags"]}
    assert tags["Team"] == "ml" and "stray" not in tags
    assert not plan_apply(stack(applied)).changes


def test_destroy_removes_everything(applied: Context) -> None:
    resources = monitoring.resources(applied)
    plan = plan_destroy(resources)
    assert {s.action for s in plan.steps} == {Action.DELETE}
    assert execute(plan).ok
    assert client("sns").list_topics()["Topics"] == []
    assert client("cloudwatch").list_dashboards()["DashboardEntries"] == []
    assert alarms(applied) == {}
    assert plan_destroy(resources).steps == []


def test_alarm_definition_drops_read_only_fields_and_sorts() -> None:
    described = {
        "AlarmName": "a",
        "AlarmArn": "arn",
        "StateValue": "OK",
        "StateReason": "fine",
        "AlarmConfigurationUpdatedTimestamp": "t",
        "Dimensions": [
            {"Name": "VariantName", "Value": "A"},
            {"Name": "EndpointName", "Value": "e"},
        ],
        "AlarmActions": ["b", "a"],
        "Threshold": 5,
        "Metrics": [],
        "MetricName": "M",
    }
    assert alarm_definition(described) == {
        "Dimensions": [
            {"Name": "EndpointName", "Value": "e"},
            {"Name": "VariantName", "Value": "A"},
        ],
        "AlarmActions": ["a", "b"],
        "OKActions": [],
        "InsufficientDataActions": [],
        "Threshold": 5.0,
        "MetricName": "M",
    }
