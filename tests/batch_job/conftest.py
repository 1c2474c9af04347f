from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from batch_job_support import (
    ACTIVE_PARAM,
    BUCKET,
    DEPLOYMENT,
    DEPLOYMENT_PARAM,
    REGION,
    TABLE,
    Pipeline,
)
from moto import mock_aws

from tests.conftest import WINDOWS


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    for window in WINDOWS:
        monkeypatch.setenv(window, "0")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield


@pytest.fixture
def pipeline(aws: None) -> Pipeline:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    dynamodb.create_table(
        TableName=TABLE,
        KeySchema=[
            {"AttributeName": "predictionId", "KeyType": "HASH"},
            {"AttributeName": "timestamp", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "predictionId", "AttributeType": "S"},
            {"AttributeName": "timestamp", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    ssm = boto3.client("ssm", region_name=REGION)
    ssm.put_parameter(Name=ACTIVE_PARAM, Value="v1.0.0", Type="String")
    ssm.put_parameter(Name=DEPLOYMENT_PARAM, Value=json.dumps(DEPLOYMENT), Type="String")

    # Clients the job creates from this session count their calls; the helpers' clients above
    # come from the default session and are not counted.
    session = boto3.Session(region_name=REGION)
    calls: Counter[str] = Counter()

    def count(event_name: str, **_: Any) -> None:
        calls[event_name.removeprefix("before-call.")] += 1

    session.events.register("before-call", count)
    return Pipeline(session=session, s3=s3, dynamodb=dynamodb, calls=calls)


@pytest.fixture(autouse=True)
def _capture_job_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="batch_job")
