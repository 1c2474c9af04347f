"""Fixtures for the Lambda handler tests: a moto-backed account with the pipeline's resources."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from moto import mock_aws

from tests.conftest import WINDOWS
from tests.support import MotoState, create_handler_state, queue_endpoint_results

REGION = "us-east-1"
ENDPOINT = "mlpipe-endpoint"
TABLE = "mlpipe-predictions"
ACTIVE_PARAM = "/mlpipe/active-version"
DEPLOYMENT_PARAM = "/mlpipe/deployment"
DEPLOYMENT = {
    "variants": [
        {"name": "ModelA", "version": "v1.0.0", "weight": 80},
        {"name": "ModelB", "version": "v2.0.0", "weight": 20},
    ],
    "champion": "ModelA",
    "challenger": "ModelB",
}
WALL_CLOCK = 1_700_000_000.0
DAY = 86400


class FakeClock:
    """A monotonic clock that only moves when told to."""

    def __init__(self) -> None:
        self.value = 1000.0

    def __call__(self) -> float:
        return self.value

    def advance(self, seconds: float) -> None:
        self.value += seconds


def _aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    for window in WINDOWS:
        monkeypatch.setenv(window, "0")


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    _aws_environment(monkeypatch)
    with mock_aws():
        yield


def _create_resources() -> None:
    """The endpoint, table and SSM parameters the handlers use."""
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    role = "arn:aws:iam::123456789012:role/mlpipe-sagemaker"
    for model in ("model-a", "model-b"):
        sagemaker.create_model(
            ModelName=model,
            ExecutionRoleArn=role,
            PrimaryContainer={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/m:1"},
        )
    sagemaker.create_endpoint_config(
        EndpointConfigName=f"{ENDPOINT}-config",
        ProductionVariants=[
            {
                "VariantName": name,
                "ModelName": model,
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
                "InitialVariantWeight": weight,
            }
            for name, model, weight in (("ModelA", "model-a", 80.0), ("ModelB", "model-b", 20.0))
        ],
    )
    sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=f"{ENDPOINT}-config")

    create_handler_state(
        REGION, TABLE, {ACTIVE_PARAM: "v1.0.0", DEPLOYMENT_PARAM: json.dumps(DEPLOYMENT)}
    )


@pytest.fixture(scope="module")
def resources_state() -> MotoState:
    """The account with :func:`_create_resources` done, made once per module."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        _aws_environment(monkeypatch)
        with mock_aws():
            _create_resources()
            return MotoState()


@pytest.fixture
def pipeline(aws: None, resources_state: MotoState, monkeypatch: pytest.MonkeyPatch) -> Pipeline:
    """A copy of the endpoint, table and SSM parameters; the handlers pointed at them."""
    resources_state.restore()
    for name, value in {
        "ENDPOINT_NAME": ENDPOINT,
        "TABLE_NAME": TABLE,
        "ACTIVE_VERSION_PARAM": ACTIVE_PARAM,
        "DEPLOYMENT_PARAM": DEPLOYMENT_PARAM,
    }.items():
        monkeypatch.setenv(name, value)
    for name in (
        "SSM_CACHE_TTL_SECONDS",
        "PREDICTION_TTL_DAYS",
        "FEATURE_COUNT",
        "MAX_PAYLOAD_BYTES",
        "REPORT_MALFORMED",
        "CACHE_KEY_HEADER",
    ):
        monkeypatch.delenv(name, raising=False)
    return Pipeline(monkeypatch)


class Pipeline:
    """The moto-backed pipeline resources plus helpers to drive and observe the handlers."""

    region = REGION
    table = TABLE
    wall_clock = WALL_CLOCK
    deployment = DEPLOYMENT

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch

    def fresh(self, module: Any) -> FakeClock:
        """Drop a handler module's cached clients and parameters; fake its clocks."""
        module._runtime.clear()
        clock = FakeClock()
        self.monkeypatch.setattr(module, "_now", clock)
        self.monkeypatch.setattr(module, "_wall", lambda: WALL_CLOCK)
        return clock

    def queue(self, *results: tuple[Any, str | None]) -> None:
        """Queue InvokeEndpoint results through moto's API as (predictions, variant) pairs.

        A str first element is sent as the raw body instead of {"predictions": ...}.
        """
        queue_endpoint_results(
            REGION,
            [
                {
                    "Body": body if isinstance(body, str) else json.dumps({"predictions": body}),
                    "ContentType": "application/json",
                    "InvokedProductionVariant": variant,
                }
                for body, variant in results
            ],
        )

    @staticmethod
    def record_calls(client: Any, event: str) -> list[dict[str, Any]]:
        """Record the API parameters of every call matching ``event`` (e.g. 'ssm.*')."""
        calls: list[dict[str, Any]] = []

        def capture(params: dict[str, Any], **kwargs: Any) -> None:
            calls.append(dict(params))

        client.meta.events.register(f"provide-client-params.{event}", capture)
        return calls

    @staticmethod
    def fail_calls(client: Any, operation: str, should_fail: Callable[[int], bool]) -> None:
        """Answer call n (counting from 1) of ``operation`` with a 500 error if should_fail(n)."""
        counter = {"n": 0}

        def maybe_fail(**kwargs: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
            counter["n"] += 1
            if not should_fail(counter["n"]):
                return None
            parsed = {
                "Error": {"Code": "ModelError", "Message": "injected failure"},
                "ResponseMetadata": {"HTTPStatusCode": 500},
            }
            return AWSResponse("https://example.invalid", 500, {}, None), parsed

        client.meta.events.register(f"before-call.{operation}", maybe_fail)

    @staticmethod
    def items() -> list[dict[str, Any]]:
        """Every item in the predictions table, deserialized (numbers as Decimal)."""
        table = boto3.resource("dynamodb", region_name=REGION).Table(TABLE)
        return table.scan(ConsistentRead=True)["Items"]
