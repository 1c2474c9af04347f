"""The table of transient errors: what it retries, and nothing else."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from mlpipe.core.context import Context
from mlpipe.core.transient import BY_NAME, TRANSIENT
from mlpipe.spec import Names, Spec
from tests.fake_time import FakeTime


def context() -> Context:
    spec = Spec(pipeline="pp", environment="e")
    return Context(None, spec, Names("pp", "e"), clock=FakeTime().clock(), consistency_timeout=5)  # type: ignore[arg-type]


def failing(times: int, code: str, operation: str, message: str = "") -> object:
    calls = {"n": 0}

    def call() -> str:
        calls["n"] += 1
        if calls["n"] <= times:
            raise ClientError({"Error": {"Code": code, "Message": message}}, operation)
        return "done"

    call.calls = calls  # type: ignore[attr-defined]
    return call


def test_every_entry_is_named_once_and_cites_aws() -> None:
    assert len(BY_NAME) == len(TRANSIENT)
    for entry in TRANSIENT:
        assert entry.doc.startswith("https://docs.aws.amazon.com/"), entry.name
        assert entry.operations and entry.code, entry.name


@pytest.mark.parametrize(
    ("name", "operation", "code", "message"),
    [
        ("dynamodb-backups-unavailable", "UpdateContinuousBackups",
         "ContinuousBackupsUnavailableException", "Backups are being enabled"),
        ("sagemaker-endpoint-config-not-visible", "CreateEndpoint", "ValidationException",
         "Could not find endpoint configuration arn:aws:sagemaker:..."),
        ("sagemaker-endpoint-config-not-visible", "UpdateEndpoint", "ValidationException",
         "Could not find endpoint configuration arn:aws:sagemaker:..."),
        ("sagemaker-model-data-not-accessible", "CreateModel", "ValidationException",
         "Could not access model data at s3://b/k. Please ensure that the role ..."),
        ("apigateway-conflict", "CreateDeployment", "ConflictException",
         "Unable to complete operation due to concurrent modification. Please try again later."),
        ("apigateway-too-many-requests", "CreateRestApi", "TooManyRequestsException", ""),
        ("lambda-role-not-assumable", "CreateFunction", "InvalidParameterValueException",
         "The role defined for the function cannot be assumed by Lambda."),
    ],
)  # fmt: skip
def test_a_listed_error_is_retried(name: str, operation: str, code: str, message: str) -> None:
    call = failing(2, code, operation, message)
    assert context().eventually(call, name) == "done"
    assert call.calls["n"] == 3  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("operation", "code", "message"),
    [
        ("CreateModel", "ValidationException", "Could not find model data at s3://b/k"),
        ("CreateEndpointConfig", "ValidationException", "Could not find endpoint configuration"),
        ("CreateFunction", "InvalidParameterValueException", "Unzipped size must be smaller"),
    ],
)
def test_anything_else_fails_at_once(operation: str, code: str, message: str) -> None:
    call = failing(1, code, operation, message)
    names = [t.name for t in TRANSIENT]
    with pytest.raises(ClientError):
        context().eventually(call, *names)
    assert call.calls["n"] == 1  # type: ignore[attr-defined]


def test_only_names_from_the_table_are_accepted() -> None:
    with pytest.raises(ValueError, match="ValidationException"):
        context().eventually(lambda: None, "ValidationException")
