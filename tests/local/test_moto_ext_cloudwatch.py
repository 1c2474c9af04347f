"""The moto extension for CloudWatch dashboard tags, under mock_aws."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from localaws_testing import ACCOUNT, REGION

from mlpipe.local.moto_ext import uninstall_extensions

pytestmark = pytest.mark.usefixtures("mocked")

BODY = json.dumps({"widgets": []})
ARN = f"arn:aws:cloudwatch::{ACCOUNT}:dashboard/board"


@pytest.fixture
def cw() -> Any:
    return boto3.client("cloudwatch", region_name=REGION)


def tags(cw: Any, arn: str = ARN) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in cw.list_tags_for_resource(ResourceARN=arn)["Tags"]}


def test_put_dashboard_tags_a_new_dashboard_and_ignores_tags_on_update(cw: Any) -> None:
    cw.put_dashboard(DashboardName="board", DashboardBody=BODY, Tags=[{"Key": "a", "Value": "1"}])
    assert cw.get_dashboard(DashboardName="board")["DashboardArn"] == ARN
    assert tags(cw) == {"a": "1"}
    cw.put_dashboard(DashboardName="board", DashboardBody=BODY, Tags=[{"Key": "b", "Value": "2"}])
    assert tags(cw) == {"a": "1"}


def test_tag_and_untag_a_dashboard(cw: Any) -> None:
    cw.put_dashboard(DashboardName="board", DashboardBody=BODY)
    assert tags(cw) == {}
    cw.untag_resource(ResourceARN=ARN, TagKeys=["absent"])
    cw.tag_resource(ResourceARN=ARN, Tags=[{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}])
    cw.untag_resource(ResourceARN=ARN, TagKeys=["a"])
    assert tags(cw) == {"b": "2"}


def test_tags_go_with_the_dashboard(cw: Any) -> None:
    cw.put_dashboard(DashboardName="board", DashboardBody=BODY, Tags=[{"Key": "a", "Value": "1"}])
    cw.delete_dashboards(DashboardNames=["board"])
    cw.put_dashboard(DashboardName="board", DashboardBody=BODY)
    assert tags(cw) == {}


@pytest.mark.parametrize(
    "call",
    [
        lambda cw: cw.tag_resource(ResourceARN=ARN, Tags=[{"Key": "a", "Value": "1"}]),
        lambda cw: cw.untag_resource(ResourceARN=ARN, TagKeys=["a"]),
        lambda cw: cw.list_tags_for_resource(ResourceARN=ARN),
    ],
)
def test_a_missing_dashboard_is_not_found(cw: Any, call: Any) -> None:
    with pytest.raises(ClientError) as excinfo:
        call(cw)
    assert excinfo.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_alarm_tags_still_work(cw: Any) -> None:
    cw.put_metric_alarm(
        AlarmName="alarm",
        MetricName="Errors",
        Namespace="AWS/Lambda",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        Tags=[{"Key": "a", "Value": "1"}],
    )
    arn = f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:alarm"
    cw.tag_resource(ResourceARN=arn, Tags=[{"Key": "b", "Value": "2"}])
    cw.untag_resource(ResourceARN=arn, TagKeys=["a"])
    assert tags(cw, arn) == {"b": "2"}


def test_uninstall_restores_moto_dashboards(cw: Any) -> None:
    uninstall_extensions()
    cw.put_dashboard(DashboardName="board", DashboardBody=BODY, Tags=[{"Key": "a", "Value": "1"}])
    assert tags(cw) == {}
