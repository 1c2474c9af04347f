"""CloudWatch alarms evaluating on the embedded AWS (under mock_aws), against hand-computed
values: each statistic the pipeline's alarms use, periods, M of N, every comparison and every
TreatMissingData; state changes, history, SNS notifications and percentile statistics."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from localaws_testing import ACCOUNT, REGION

from mlpipe.local import alarm_history
from mlpipe.local.alarms import AlarmEvaluator, AlarmSettings, evaluate, percentile, statistic
from mlpipe.local.metrics import MetricsPublisher

pytestmark = pytest.mark.usefixtures("mocked")

T0 = 1_900_000_200.0  # a multiple of 300 and of 60: period boundaries are easy to see
DIMS = {"EndpointName": "ep", "VariantName": "ModelB"}


def settings(**changes: Any) -> AlarmSettings:
    base: dict[str, Any] = {
        "namespace": "AWS/SageMaker",
        "metric": "Invocation5XXErrors",
        "dimensions": frozenset(DIMS.items()),
        "stat": "Sum",
        "period": 60,
        "evaluation_periods": 1,
        "datapoints_to_alarm": 1,
        "threshold": 1.0,
        "comparison": "GreaterThanOrEqualToThreshold",
        "treat_missing_data": "notBreaching",
    }
    return AlarmSettings(**{**base, **changes})


# --- statistics, by hand -------------------------------------------------------------------


def test_statistics_by_hand() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert statistic(values, "Sum") == 10
    assert statistic(values, "Average") == 2.5
    assert statistic(values, "SampleCount") == 4
    assert statistic(values, "Minimum") == 1
    assert statistic(values, "Maximum") == 4
    assert statistic([], "Sum") is None
    # nearest rank: p50 of 4 values is the 2nd smallest, p99 the largest
    assert statistic(values, "p50") == 2
    assert statistic(values, "p99") == 4
    hundred = [float(v) for v in range(1, 101)]
    assert percentile(hundred, 99) == 99
    assert percentile(hundred, 90) == 90
    assert percentile(hundred, 99.5) == 100


def test_p99_over_two_periods_both_must_breach() -> None:
    """The pipeline's latency alarm: p99 > threshold in 2 of 2 periods."""
    rule = settings(
        metric="ModelLatency",
        stat="p99",
        threshold=2_000_000,
        comparison="GreaterThanThreshold",
        evaluation_periods=2,
        datapoints_to_alarm=2,
    )
    slow = [(T0 + i * 0.1, 2_500_000.0) for i in range(2)]
    fast = [(T0 + 1 + i * 0.1, 1_000.0) for i in range(198)]
    # period 1 (T0..T0+60): 200 values, 2 slow: p99 is rank 198 = 1000 µs, not breaching
    assert evaluate(rule, slow + fast, T0 + 70, "OK").state == "OK"
    # 3 slow of 200 in each of the two periods: rank 198 is slow in both
    both = [
        (T0 + p * 60 + i * 0.1, 2_500_000.0 if i < 3 else 1_000.0)
        for p in (0, 1)
        for i in range(200)
    ]
    result = evaluate(rule, both, T0 + 70, "OK")
    assert result.state == "ALARM"
    assert result.data["recentDatapoints"] == [2_500_000.0, 2_500_000.0]
    assert "2 out of the last 2 datapoints" in result.reason
    # only the newest period slow: 1 of 2 is not enough
    newest_only = [(w, v) for w, v in both if w >= T0 + 60] + fast
    assert evaluate(rule, newest_only, T0 + 70, "ALARM").state == "OK"


def test_sum_breaches_at_the_threshold_and_old_periods_drop_out() -> None:
    rule = settings()  # Sum >= 1 over one 60 s period
    errors = [(T0 + 5, 0.0), (T0 + 6, 1.0), (T0 + 7, 0.0)]
    assert evaluate(rule, errors, T0 + 10, "OK").state == "ALARM"
    assert evaluate(rule, [(T0 + 5, 0.0)] * 3, T0 + 10, "OK").state == "OK"
    # Once the metric stops, the last datapoint is evaluated again while it is in the
    # evaluation range (1 + 2 periods); a newer datapoint replaces it at once.
    assert evaluate(rule, errors, T0 + 179, "ALARM").state == "ALARM"
    assert evaluate(rule, [*errors, (T0 + 70, 0.0)], T0 + 75, "ALARM").state == "OK"
    assert evaluate(rule, errors, T0 + 181, "ALARM").state == "OK"  # notBreaching


# "How alarm state is evaluated when data is missing", the two example tables: 5 periods,
# oldest first (0 not breaching, X breaching, - missing), and the state for each
# TreatMissingData (None: the current state is kept).
DOC_TABLES = [
    (3, "0-X-X", ("OK", "OK", "OK", "OK")),
    (3, "0----", ("OK", "OK", "OK", "OK")),
    (3, "-----", ("INSUFFICIENT_DATA", None, "ALARM", "OK")),
    (3, "0XX-X", ("ALARM", "ALARM", "ALARM", "ALARM")),
    (3, "----X", ("INSUFFICIENT_DATA", None, "ALARM", "OK")),
    (3, "X----", ("ALARM", None, "ALARM", "OK")),
    (2, "0-X-X", ("ALARM", "ALARM", "ALARM", "ALARM")),
    (2, "00X0X", ("ALARM", "ALARM", "ALARM", "ALARM")),
    (2, "0-X--", ("OK", "OK", "ALARM", "OK")),
    (2, "----0", ("OK", "OK", "ALARM", "OK")),
    (2, "----X", ("INSUFFICIENT_DATA", None, "ALARM", "OK")),
]


@pytest.mark.parametrize(("to_alarm", "points", "states"), DOC_TABLES)
def test_the_docs_missing_data_tables(to_alarm: int, points: str, states: tuple[Any, ...]) -> None:
    now = T0 + 4 * 60 + 30  # in the fifth period
    samples = [
        (T0 + i * 60 + 1, 5.0 if p == "X" else 0.0) for i, p in enumerate(points) if p != "-"
    ]
    for treat, expected in zip(
        ("missing", "ignore", "breaching", "notBreaching"), states, strict=True
    ):
        rule = settings(
            evaluation_periods=3,
            datapoints_to_alarm=to_alarm,
            comparison="GreaterThanThreshold",
            treat_missing_data=treat,
        )
        assert evaluate(rule, samples, now, "OK").state == expected, (points, treat)


def test_maximum_and_average_and_samplecount() -> None:
    ages = [(T0 + 1, 10.0), (T0 + 2, 70_000.0), (T0 + 3, 5.0)]
    iterator = settings(stat="Maximum", threshold=60_000, comparison="GreaterThanThreshold")
    assert evaluate(iterator, ages, T0 + 30, "OK").state == "ALARM"
    assert (
        evaluate(settings(stat="Average", threshold=23_338), ages, T0 + 30, "OK").state == "ALARM"
    )
    assert evaluate(settings(stat="Average", threshold=23_339), ages, T0 + 30, "OK").state == "OK"
    assert evaluate(settings(stat="SampleCount", threshold=3), ages, T0 + 30, "OK").state == "ALARM"
    assert evaluate(settings(stat="SampleCount", threshold=4), ages, T0 + 30, "OK").state == "OK"


@pytest.mark.parametrize(
    ("comparison", "value", "state"),
    [
        ("GreaterThanThreshold", 5.0, "OK"),
        ("GreaterThanThreshold", 6.0, "ALARM"),
        ("GreaterThanOrEqualToThreshold", 5.0, "ALARM"),
        ("LessThanThreshold", 5.0, "OK"),
        ("LessThanThreshold", 4.0, "ALARM"),
        ("LessThanOrEqualToThreshold", 5.0, "ALARM"),
        ("LessThanOrEqualToThreshold", 6.0, "OK"),
    ],
)
def test_comparisons(comparison: str, value: float, state: str) -> None:
    rule = settings(comparison=comparison, threshold=5.0)
    assert evaluate(rule, [(T0 + 1, value)], T0 + 2, "OK").state == state


def test_m_out_of_n() -> None:
    rule = settings(evaluation_periods=3, datapoints_to_alarm=2)
    one = [(T0 + 1, 1.0), (T0 + 61, 0.0), (T0 + 121, 0.0)]
    two = [(T0 + 1, 1.0), (T0 + 61, 0.0), (T0 + 121, 3.0)]
    assert evaluate(rule, one, T0 + 150, "OK").state == "OK"
    assert evaluate(rule, two, T0 + 150, "OK").state == "ALARM"


@pytest.mark.parametrize(
    ("treat", "current", "expected"),
    [
        ("missing", "OK", "INSUFFICIENT_DATA"),
        ("notBreaching", "ALARM", "OK"),
        ("breaching", "OK", "ALARM"),
        ("ignore", "ALARM", None),  # the state is kept
    ],
)
def test_all_periods_missing(treat: str, current: str, expected: str | None) -> None:
    rule = settings(treat_missing_data=treat, evaluation_periods=2, datapoints_to_alarm=2)
    assert evaluate(rule, [], T0 + 100, current).state == expected


def test_some_periods_missing() -> None:
    """One good datapoint, one period missing, 2 of 2 to alarm."""
    good = [(T0 + 61, 0.0)]
    for treat, expected in (
        ("missing", "OK"),
        ("ignore", "OK"),
        ("notBreaching", "OK"),
        ("breaching", "OK"),  # 1 breaching (the missing one) of 2 needed
    ):
        rule = settings(treat_missing_data=treat, evaluation_periods=2, datapoints_to_alarm=2)
        assert evaluate(rule, good, T0 + 100, "OK").state == expected, treat
    bad = [(T0 + 61, 1.0)]
    rule = settings(treat_missing_data="breaching", evaluation_periods=2, datapoints_to_alarm=2)
    assert evaluate(rule, bad, T0 + 100, "OK").state == "ALARM"
    # only a breaching datapoint, too few to alarm, the oldest period of the range empty
    rule = settings(treat_missing_data="missing", evaluation_periods=2, datapoints_to_alarm=2)
    assert evaluate(rule, bad, T0 + 100, "OK").state == "INSUFFICIENT_DATA"


def test_low_sample_count_percentile_ignored_keeps_the_state() -> None:
    rule = settings(stat="p99", threshold=10, comparison="GreaterThanThreshold")
    few = [(T0 + 1, 100.0)] * 50  # p99 needs 10/(1-0.99) = 1000 samples to count
    assert evaluate(rule, few, T0 + 2, "OK").state == "ALARM"
    assert (
        evaluate(
            settings(**{**rule.__dict__, "low_sample_count": "ignore"}), few, T0 + 2, "OK"
        ).state
        is None
    )


def test_time_scale_shortens_periods() -> None:
    rule = settings(period=300)
    error = [(T0 + 1, 1.0)]
    assert evaluate(rule, error, T0 + 200, "OK").state == "ALARM"
    # scaled 60x, a 300 s period is 5 s: 200 s later the error is long gone
    assert evaluate(rule, error, T0 + 200, "ALARM", scale=60).state == "OK"
    assert evaluate(rule, error, T0 + 2, "OK", scale=60).state == "ALARM"


# --- on moto: state, history, notifications -----------------------------------------------


@pytest.fixture
def cw() -> Any:
    return boto3.client("cloudwatch", region_name=REGION)


@pytest.fixture
def topic() -> tuple[str, str]:
    sns, sqs = boto3.client("sns", region_name=REGION), boto3.client("sqs", region_name=REGION)
    arn = sns.create_topic(Name="alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    queue_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:inbox"
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn)
    return arn, queue


def put_alarm(cw: Any, topic_arn: str, **extra: Any) -> None:
    cw.put_metric_alarm(
        AlarmName="5xx",
        Namespace="AWS/SageMaker",
        MetricName="Invocation5XXErrors",
        Dimensions=[{"Name": k, "Value": v} for k, v in DIMS.items()],
        Statistic="Sum",
        Period=300,
        EvaluationPeriods=1,
        Threshold=1.0,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        TreatMissingData="notBreaching",
        AlarmActions=[topic_arn],
        OKActions=[topic_arn],
        **extra,
    )


def publish(cw: Any, values: list[float], at: float) -> None:
    times = iter([at])
    publisher = MetricsPublisher(lambda: cw, wall=lambda: next(times, at))
    for value in values:
        publisher.put("AWS/SageMaker", "Invocation5XXErrors", value, "None", DIMS)
    publisher.flush()


def state(cw: Any) -> dict[str, Any]:
    return cw.describe_alarms(AlarmNames=["5xx"])["MetricAlarms"][0]


def test_alarm_fires_from_published_metrics_and_notifies(
    cw: Any, topic: tuple[str, str], tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(alarm_history, "NOTIFICATIONS_FILE", tmp_path / "n.jsonl")
    monkeypatch.setattr(alarm_history, "wall", lambda: T0)
    topic_arn, queue = topic
    put_alarm(cw, topic_arn)
    assert state(cw)["StateValue"] == "INSUFFICIENT_DATA"
    evaluator = AlarmEvaluator(clock=lambda: T0 + 1)
    assert evaluator.evaluate_once() == [("5xx", "INSUFFICIENT_DATA", "OK")]
    publish(cw, [0.0, 1.0, 0.0], T0 + 10)
    assert evaluator.evaluate_once(T0 + 11) == [("5xx", "OK", "ALARM")]
    alarm = state(cw)
    assert alarm["StateValue"] == "ALARM"
    assert alarm["StateUpdatedTimestamp"] == datetime.fromtimestamp(T0 + 11, UTC)
    assert "1 out of the last 1 datapoints [1" in alarm["StateReason"]
    assert json.loads(alarm["StateReasonData"])["recentDatapoints"] == [1.0]
    assert evaluator.evaluate_once(T0 + 12) == []  # no change, no new history
    # the notification went to the topic's subscriber, and to the notifications file
    messages = boto3.client("sqs", region_name=REGION).receive_message(
        QueueUrl=queue, MaxNumberOfMessages=10
    )["Messages"]
    bodies = [json.loads(json.loads(m["Body"])["Message"]) for m in messages]
    assert [b["NewStateValue"] for b in bodies] == ["OK", "ALARM"]
    assert bodies[1]["OldStateValue"] == "OK" and bodies[1]["AlarmName"] == "5xx"
    lines = (tmp_path / "n.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["subject"] == 'ALARM: "5xx" in us-east-1'
    # no datapoint since: back to OK once the error leaves the evaluation range (3 periods)
    assert evaluator.evaluate_once(T0 + 899) == []
    assert evaluator.evaluate_once(T0 + 901) == [("5xx", "ALARM", "OK")]
    history = cw.describe_alarm_history(AlarmName="5xx", HistoryItemType="StateUpdate")
    summaries = [i["HistorySummary"] for i in history["AlarmHistoryItems"]]
    assert summaries == [
        "Alarm updated from ALARM to OK",
        "Alarm updated from OK to ALARM",
        "Alarm updated from INSUFFICIENT_DATA to OK",
    ]


def test_update_keeps_state_and_set_alarm_state_is_recorded(
    cw: Any, topic: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(alarm_history, "wall", lambda: T0)
    put_alarm(cw, topic[0])
    cw.set_alarm_state(AlarmName="5xx", StateValue="ALARM", StateReason="by hand")
    put_alarm(cw, topic[0])  # an update: the state stays
    assert state(cw)["StateValue"] == "ALARM"
    items = cw.describe_alarm_history(AlarmName="5xx", ScanBy="TimestampAscending")[
        "AlarmHistoryItems"
    ]
    assert [i["HistoryItemType"] for i in items] == [
        "ConfigurationUpdate",
        "StateUpdate",
        "Action",
        "ConfigurationUpdate",
    ]
    page = cw.describe_alarm_history(AlarmName="5xx", MaxRecords=3)
    assert len(page["AlarmHistoryItems"]) == 3 and page["NextToken"]


def test_percentiles_from_get_metric_statistics_and_data(cw: Any) -> None:
    at = T0 + 10
    publisher = MetricsPublisher(lambda: cw, wall=lambda: at)
    for value in range(1, 101):
        publisher.put("AWS/SageMaker", "ModelLatency", float(value), "Microseconds", DIMS)
    publisher.flush()
    start, end = datetime.fromtimestamp(T0, UTC), datetime.fromtimestamp(T0 + 60, UTC)
    dims = [{"Name": k, "Value": v} for k, v in DIMS.items()]
    answer = cw.get_metric_statistics(
        Namespace="AWS/SageMaker",
        MetricName="ModelLatency",
        Dimensions=dims,
        StartTime=start,
        EndTime=end,
        Period=60,
        Statistics=["SampleCount"],
        ExtendedStatistics=["p50", "p99"],
    )
    (point,) = answer["Datapoints"]
    assert point["SampleCount"] == 100
    assert point["ExtendedStatistics"] == {"p50": 50.0, "p99": 99.0}
    data = cw.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "p90",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/SageMaker",
                        "MetricName": "ModelLatency",
                        "Dimensions": dims,
                    },
                    "Period": 60,
                    "Stat": "p90",
                },
            }
        ],
        StartTime=start,
        EndTime=end,
    )
    assert data["MetricDataResults"][0]["Values"] == [90.0]


def test_publisher_batches_values_into_few_calls(cw: Any) -> None:
    publisher = MetricsPublisher(lambda: cw, wall=lambda: T0)
    for i in range(500):
        publisher.put(
            "AWS/Lambda", "Duration", float(i % 200), "Milliseconds", {"FunctionName": "f"}
        )
        publisher.put("AWS/Lambda", "Invocations", 1, "Count", {"FunctionName": "f"})
    assert publisher.flush() == 1000
    # 200 distinct durations in one second: two datums of at most 150 values; one call
    assert publisher.calls == 1
    points = cw.get_metric_statistics(
        Namespace="AWS/Lambda",
        MetricName="Invocations",
        Dimensions=[{"Name": "FunctionName", "Value": "f"}],
        StartTime=datetime.fromtimestamp(T0 - 60, UTC),
        EndTime=datetime.fromtimestamp(T0 + 60, UTC),
        Period=60,
        Statistics=["Sum"],
    )["Datapoints"]
    assert sum(p["Sum"] for p in points) == 500


def test_set_alarm_state_lasts_until_the_next_evaluation(
    cw: Any, topic: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "This temporary state change lasts only until the next alarm comparison occurs." """
    monkeypatch.setattr(alarm_history, "wall", lambda: T0)
    put_alarm(cw, topic[0])
    evaluator = AlarmEvaluator()
    publish(cw, [0.0, 0.0], T0 + 10)
    assert evaluator.evaluate_once(T0 + 11) == [("5xx", "INSUFFICIENT_DATA", "OK")]
    assert evaluator.evaluate_once(T0 + 12) == []  # nothing new: nothing changes
    cw.set_alarm_state(AlarmName="5xx", StateValue="ALARM", StateReason="by hand")
    assert evaluator.evaluate_once(T0 + 13) == [("5xx", "ALARM", "OK")]
    publish(cw, [1.0], T0 + 14)  # values that come later are read too
    assert evaluator.evaluate_once(T0 + 15) == [("5xx", "OK", "ALARM")]
