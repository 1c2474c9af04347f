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
from tests.support import MotoState, create_handler_state


def _aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    for window in WINDOWS:
        monkeypatch.setenv(window, "0")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    _aws_environment(monkeypatch)
    with mock_aws():
        yield


@pytest.fixture(scope="module")
def resources_state() -> MotoState:
    """The bucket, table and parameters the job uses, made once per module."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        _aws_environment(monkeypatch)
        with mock_aws():
            boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
            create_handler_state(
                REGION, TABLE, {ACTIVE_PARAM: "v1.0.0", DEPLOYMENT_PARAM: json.dumps(DEPLOYMENT)}
            )
            return MotoState()


@pytest.fixture
def pipeline(aws: None, resources_state: MotoState) -> Pipeline:
    """A copy of the bucket, table and parameters, with clients on them."""
    resources_state.restore()
    s3 = boto3.client("s3", region_name=REGION)
    dynamodb = boto3.client("dynamodb", region_name=REGION)

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
