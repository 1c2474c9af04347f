"""Lambda's account concurrency on the embedded AWS: the quota, and the unreserved minimum."""

from __future__ import annotations

import io
import json
import zipfile

import boto3
import pytest
from botocore.exceptions import ClientError
from localaws_testing import REGION

pytestmark = pytest.mark.usefixtures("mocked")


def function(name: str) -> None:
    iam = boto3.client("iam", region_name=REGION)
    trust = {"Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                            "Principal": {"Service": "lambda.amazonaws.com"}}]}  # fmt: skip
    try:
        arn = iam.create_role(RoleName="fn", AssumeRolePolicyDocument=json.dumps(trust))
        role = arn["Role"]["Arn"]
    except ClientError:
        role = iam.get_role(RoleName="fn")["Role"]["Arn"]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("h.py", "def handler(e, c):\n    return e\n")
    boto3.client("lambda", region_name=REGION).create_function(
        FunctionName=name, Runtime="python3.11", Role=role, Handler="h.handler",
        Code={"ZipFile": buffer.getvalue()},
    )  # fmt: skip


def test_account_settings_report_the_quota_and_what_is_unreserved() -> None:
    lam = boto3.client("lambda", region_name=REGION)
    assert lam.get_account_settings()["AccountLimit"]["ConcurrentExecutions"] == 1000
    function("a")
    lam.put_function_concurrency(FunctionName="a", ReservedConcurrentExecutions=50)
    limit = lam.get_account_settings()["AccountLimit"]
    assert (limit["ConcurrentExecutions"], limit["UnreservedConcurrentExecutions"]) == (1000, 950)


def test_aws_keeps_100_unreserved(monkeypatch: pytest.MonkeyPatch) -> None:
    lam = boto3.client("lambda", region_name=REGION)
    function("a")
    function("b")
    lam.put_function_concurrency(FunctionName="a", ReservedConcurrentExecutions=850)
    with pytest.raises(ClientError) as caught:
        lam.put_function_concurrency(FunctionName="b", ReservedConcurrentExecutions=51)
    assert caught.value.response["Error"]["Message"] == (
        "Specified ReservedConcurrentExecutions for function decreases account's "
        "UnreservedConcurrentExecution below its minimum value of [100]."
    )
    lam.put_function_concurrency(FunctionName="b", ReservedConcurrentExecutions=50)


def test_a_new_accounts_quota_of_10_holds_no_reservation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLPIPE_LOCAL_LAMBDA_CONCURRENCY", "10")
    lam = boto3.client("lambda", region_name=REGION)
    function("a")
    with pytest.raises(ClientError, match=r"below its minimum value of \[10\]"):
        lam.put_function_concurrency(FunctionName="a", ReservedConcurrentExecutions=1)
    assert lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == 10
