"""The embedded AWS's consistency windows: what was just created is not usable for a while, as
on AWS, and usable once the window has passed."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from localaws_testing import ACCOUNT, REGION, FakeClock

from mlpipe.local.moto_ext import windows as ext_windows

TRUST = json.dumps(
    {
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": ["lambda.amazonaws.com", "sagemaker.amazonaws.com"]},
                "Action": "sts:AssumeRole",
            }
        ]
    }
)


@pytest.fixture
def windows(mocked: None, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    monkeypatch.setattr(ext_windows, "clock", clock)
    for name, seconds in (("ROLE", "2"), ("BACKUPS", "1"), ("ENDPOINT_CONFIG", "0.5")):
        monkeypatch.setenv(f"MLPIPE_LOCAL_{name}_WINDOW", seconds)
    return clock


def refused(call: Callable[[], Any]) -> dict[str, str]:
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value.response["Error"]


def role() -> str:
    iam = boto3.client("iam", region_name=REGION)
    return iam.create_role(RoleName="r", AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]


def zipped() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("h.py", "def handler(e, c):\n    return e\n")
    return buffer.getvalue()


def test_a_new_role_cannot_be_assumed_by_lambda_for_the_window(windows: FakeClock) -> None:
    arn = role()
    lam = boto3.client("lambda", region_name=REGION)

    def create() -> Any:
        return lam.create_function(
            FunctionName="f", Runtime="python3.11", Role=arn, Handler="h.handler",
            Code={"ZipFile": zipped()},
        )  # fmt: skip

    error = refused(create)
    assert error["Code"] == "InvalidParameterValueException"
    assert error["Message"] == "The role defined for the function cannot be assumed by Lambda."
    windows.advance(1.9)
    assert refused(create)["Code"] == "InvalidParameterValueException"
    windows.advance(0.2)
    assert create()["FunctionName"] == "f"


def test_a_new_role_cannot_be_assumed_by_sagemaker_for_the_window(windows: FakeClock) -> None:
    arn = role()
    sm = boto3.client("sagemaker", region_name=REGION)

    def create() -> Any:
        return sm.create_model(
            ModelName="m", ExecutionRoleArn=arn,
            PrimaryContainer={"Image": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/i:1"},
        )  # fmt: skip

    error = refused(create)
    assert (error["Code"], error["Message"]) == (
        "ValidationException",
        f"Could not assume role {arn}",
    )
    windows.advance(2)
    assert create()["ModelArn"]


def test_continuous_backups_are_unavailable_right_after_the_table_is_created(
    windows: FakeClock,
) -> None:
    ddb = boto3.client("dynamodb", region_name=REGION)
    ddb.create_table(
        TableName="t",
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )

    def enable() -> Any:
        return ddb.update_continuous_backups(
            TableName="t",
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
        )

    assert refused(enable)["Code"] == "ContinuousBackupsUnavailableException"
    windows.advance(1)
    assert enable()["ContinuousBackupsDescription"]["ContinuousBackupsStatus"] == "ENABLED"


def test_a_new_endpoint_config_is_not_visible_to_create_endpoint(windows: FakeClock) -> None:
    sm = boto3.client("sagemaker", region_name=REGION)
    sm.create_model(
        ModelName="m",
        ExecutionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/old",
        PrimaryContainer={"Image": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/i:1"},
    )
    sm.create_endpoint_config(
        EndpointConfigName="c",
        ProductionVariants=[
            {"VariantName": "A", "ModelName": "m", "InstanceType": "ml.m5.large",
             "InitialInstanceCount": 1}
        ],
    )  # fmt: skip

    def create() -> Any:
        return sm.create_endpoint(EndpointName="e", EndpointConfigName="c")

    error = refused(create)
    assert error["Code"] == "ValidationException"
    assert error["Message"].startswith("Could not find endpoint configuration arn:aws:sagemaker:")
    windows.advance(0.5)
    assert create()["EndpointArn"]


def test_windows_are_set_by_environment_and_zero_turns_them_off(
    windows: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLPIPE_LOCAL_ROLE_WINDOW", "0")
    arn = role()
    sm = boto3.client("sagemaker", region_name=REGION)
    assert sm.create_model(
        ModelName="m", ExecutionRoleArn=arn,
        PrimaryContainer={"Image": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/i:1"},
    )  # fmt: skip
    monkeypatch.delenv("MLPIPE_LOCAL_BACKUPS_WINDOW")
    assert ext_windows.window("BACKUPS") == 1.0  # on by default
