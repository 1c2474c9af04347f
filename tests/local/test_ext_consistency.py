"""The embedded AWS's further consistency windows: SageMaker cannot read model data with a role
whose permissions just changed, and API Gateway is busy with what it just created."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from localaws_testing import ACCOUNT, REGION, FakeClock

from mlpipe.local.moto_ext import consistency as ext_consistency
from mlpipe.local.moto_ext import windows as ext_windows

TRUST = json.dumps(
    {
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "sagemaker.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ]
    }
)
READ = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::model-bucket/*"}
        ],
    }
)
URL = "s3://model-bucket/models/m.tar.gz"


@pytest.fixture
def windows(mocked: None, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    monkeypatch.setattr(ext_windows, "clock", clock)
    monkeypatch.setenv("MLPIPE_LOCAL_ROLE_WINDOW", "0")  # the other windows of these calls
    monkeypatch.setenv("MLPIPE_LOCAL_MODEL_DATA_WINDOW", "3")
    monkeypatch.setenv("MLPIPE_LOCAL_APIGATEWAY_WINDOW", "0.5")
    return clock


def refused(call: Callable[[], Any]) -> dict[str, str]:
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value.response["Error"]


def _model_data() -> None:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="model-bucket")
    s3.put_object(Bucket="model-bucket", Key="models/m.tar.gz", Body=b"model")


def _create_model(arn: str, name: str = "m") -> Callable[[], Any]:
    sm = boto3.client("sagemaker", region_name=REGION)
    image = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/i:1"
    return lambda: sm.create_model(
        ModelName=name,
        ExecutionRoleArn=arn,
        PrimaryContainer={"Image": image, "ModelDataUrl": URL},
    )


def test_create_model_cannot_read_model_data_while_a_new_role_propagates(
    windows: FakeClock,
) -> None:
    _model_data()
    iam = boto3.client("iam", region_name=REGION)
    arn = iam.create_role(RoleName="r", AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]
    create = _create_model(arn)
    error = refused(create)
    assert error["Code"] == "ValidationException"
    assert error["Message"].startswith(f"Could not access model data at {URL}.")
    windows.advance(3)
    assert create()["ModelArn"]


def test_a_changed_role_policy_opens_the_window_again(windows: FakeClock) -> None:
    _model_data()
    iam = boto3.client("iam", region_name=REGION)
    arn = iam.create_role(RoleName="r", AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]
    windows.advance(3)
    iam.put_role_policy(RoleName="r", PolicyName="read", PolicyDocument=READ)
    assert refused(_create_model(arn))["Message"].startswith("Could not access model data")
    windows.advance(3)
    assert _create_model(arn)()["ModelArn"]


def _api() -> tuple[Any, str]:
    apigw = boto3.client("apigateway", region_name=REGION)
    api = apigw.create_rest_api(name="a")["id"]
    root = apigw.get_resources(restApiId=api)["items"][0]["id"]
    apigw.put_method(restApiId=api, resourceId=root, httpMethod="GET", authorizationType="NONE")
    apigw.put_integration(restApiId=api, resourceId=root, httpMethod="GET", type="MOCK")
    return apigw, api


def test_api_gateway_is_busy_right_after_creating_the_api_and_the_stage(
    windows: FakeClock,
) -> None:
    apigw, api = _api()
    error = refused(lambda: apigw.create_deployment(restApiId=api))
    assert error["Code"] == "ConflictException"
    assert error["Message"] == ext_consistency.CONFLICT
    windows.advance(0.5)
    deployment = apigw.create_deployment(restApiId=api)["id"]
    apigw.create_stage(
        restApiId=api,
        stageName="prod",
        deploymentId=deployment,
        cacheClusterEnabled=True,
        cacheClusterSize="0.5",
    )
    ttl = [{"op": "replace", "path": "/*/*/caching/ttlInSeconds", "value": "60"}]
    update = lambda: apigw.update_stage(restApiId=api, stageName="prod", patchOperations=ttl)  # noqa: E731
    assert refused(update)["Code"] == "ConflictException"
    windows.advance(0.5)
    assert update()["stageName"] == "prod"


def test_the_windows_are_on_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MODEL_DATA", "APIGATEWAY"):
        monkeypatch.delenv(f"MLPIPE_LOCAL_{name}_WINDOW", raising=False)
        assert ext_consistency.window(name) > 0
        monkeypatch.setenv(f"MLPIPE_LOCAL_{name}_WINDOW", "0")
        assert ext_consistency.window(name) == 0
