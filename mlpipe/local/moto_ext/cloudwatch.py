"""CloudWatch in the embedded AWS.

- Dashboard tags: ``PutDashboard`` applies ``Tags`` when it creates a dashboard (and ignores
  them on an update), ``TagResource``/``UntagResource``/``ListTagsForResource`` take dashboard
  ARNs, and ``DeleteDashboards`` drops the tags.
- Alarms: a new alarm starts ``INSUFFICIENT_DATA``; ``PutMetricAlarm`` on an existing alarm
  keeps its state and history; ``SetAlarmState`` goes through the same state change as an
  evaluation (:mod:`mlpipe.local.alarm_history`); ``DescribeAlarmHistory``.
- Percentiles in ``GetMetricStatistics`` (``ExtendedStatistics``) and ``GetMetricData``
  (``Stat: p99``). The evaluator itself: :mod:`mlpipe.local.alarms`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from moto.cloudwatch.exceptions import ResourceNotFoundException as CloudWatchNotFound
from moto.cloudwatch.models import Alarm as MotoAlarm
from moto.cloudwatch.models import CloudWatchBackend, Statistics
from moto.cloudwatch.responses import CloudWatchResponse
from moto.core.responses import ActionResult

from mlpipe.local import alarm_history
from mlpipe.local.alarm_history import change_state, history, record
from mlpipe.local.alarm_rules import INSUFFICIENT, PERCENTILE, as_utc, statistic
from mlpipe.local.moto_ext import _wrap, install_declared, new_method, wrapper_of


def _dashboard_named(backend: CloudWatchBackend, arn: str) -> str | None:
    """The dashboard name in ``arn:<partition>:cloudwatch::<account>:dashboard/<name>``."""
    prefix = f"arn:{backend.partition}:cloudwatch::{backend.account_id}:dashboard/"
    return arn[len(prefix) :] if arn.startswith(prefix) else None


def _dashboard_tags(original: Callable[..., Any], operation: str) -> Callable[..., Any]:
    """TagResource/UntagResource/ListTagsForResource also take dashboard ARNs (moto: alarms
    and Contributor Insights rules only)."""

    def handle(self: CloudWatchBackend, arn: str, *args: Any) -> Any:
        name = _dashboard_named(self, arn)
        if name is None:
            return original(self, arn, *args)
        if name not in self.dashboards:
            raise CloudWatchNotFound()
        if operation == "tag":
            self.tagger.tag_resource(arn, self.tagger.convert_dict_to_tags_input(args[0]))
        elif operation == "untag":
            self.tagger.untag_resource_using_names(arn, args[0])
        return self.tagger.get_tag_dict_for_resource(arn)

    return handle


@wrapper_of(CloudWatchResponse, "put_dashboard")
def _put_dashboard(original: Callable[..., Any]) -> Callable[..., Any]:
    """PutDashboard applies Tags when it creates the dashboard; on an update they are ignored."""

    def put(self: CloudWatchResponse) -> Any:
        backend = self.cloudwatch_backend
        name = self._get_param("DashboardName")
        created = name not in backend.dashboards
        result = original(self)
        tags = self._get_param("Tags", [])
        if created and tags and name in backend.dashboards:
            backend.tagger.tag_resource(backend.dashboards[name].arn, tags)
        return result

    return put


@wrapper_of(CloudWatchBackend, "delete_dashboards")
def _delete_dashboards(original: Callable[..., Any]) -> Callable[..., Any]:
    """DeleteDashboards also drops the tags of the dashboards it deletes."""

    def delete(self: CloudWatchBackend, dashboards: list[str]) -> Any:
        arns = [self.dashboards[name].arn for name in dashboards if name in self.dashboards]
        error = original(self, dashboards)
        if error is None:
            for arn in arns:
                self.tagger.delete_all_tags_for_resource(arn)
        return error

    return delete


@wrapper_of(CloudWatchBackend, "put_metric_alarm")
def _put_metric_alarm(original: Callable[..., Any]) -> Callable[..., Any]:
    """A new alarm starts INSUFFICIENT_DATA; an update keeps the state and history ("When you
    update an existing alarm, its state is left unchanged", PutMetricAlarm)."""

    def put(self: CloudWatchBackend, name: str, *args: Any, **kwargs: Any) -> Any:
        previous = self.alarms.get(name)
        alarm = original(self, name, *args, **kwargs)
        when = alarm_history.wall()
        if previous is not None:
            for attribute in (
                "state_value",
                "state_reason",
                "state_reason_data",
                "state_updated_timestamp",
            ):
                setattr(alarm, attribute, getattr(previous, attribute))
            alarm.mlpipe_history = history(previous)
            record(alarm, "ConfigurationUpdate", f'Alarm "{name}" updated', {}, when)
        else:
            alarm.state_value = INSUFFICIENT
            alarm.state_updated_timestamp = datetime.fromtimestamp(when, UTC)
            record(alarm, "ConfigurationUpdate", f'Alarm "{name}" created', {}, when)
        return alarm

    return put


@wrapper_of(MotoAlarm, "update_state")
def _update_state(original: Callable[..., Any]) -> Callable[..., Any]:
    """SetAlarmState goes through the same state change: history and actions."""

    def update(self: MotoAlarm, reason: str, reason_data: str, state_value: str) -> None:
        change_state(self, state_value, reason, reason_data, alarm_history.wall())

    return update


@wrapper_of(Statistics, "get_statistics_for_type")
def _percentile_stat(original: Callable[..., Any]) -> Callable[..., Any]:
    """GetMetricData's ``Stat: pNN``: from the raw values of the period."""

    def get(self: Statistics, stat: str) -> Any:
        if PERCENTILE.match(stat):
            return statistic(self.metric_single_values_list, stat)
        return original(self, stat)

    return get


@wrapper_of(CloudWatchResponse, "get_metric_statistics")
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


@new_method(CloudWatchResponse, "describe_alarm_history")
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
        for item in history(alarm):
            if kind and item["HistoryItemType"] != kind:
                continue
            if start and item["Timestamp"] < as_utc(start):
                continue
            if end and item["Timestamp"] > as_utc(end):
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


def install() -> None:
    install_declared(__name__)
    _wrap(CloudWatchBackend, "tag_resource", lambda f: _dashboard_tags(f, "tag"))
    _wrap(CloudWatchBackend, "untag_resource", lambda f: _dashboard_tags(f, "untag"))
    _wrap(CloudWatchBackend, "list_tags_for_resource", lambda f: _dashboard_tags(f, "list"))
