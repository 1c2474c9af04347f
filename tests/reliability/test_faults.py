"""The fault layer of the embedded AWS, in-process and over HTTP."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError

from mlpipe.core.context import Context
from mlpipe.local import faults
from mlpipe.local.faults import Faults, Rule, injected
from mlpipe.local.server import LocalAws

REGION = "us-east-1"


def ssm(**kwargs: Any) -> Any:
    """A client that retries as mlpipe's do."""
    config = Config(retries={"mode": "adaptive", "max_attempts": 10})
    return boto3.client("ssm", region_name=REGION, **{"config": config, **kwargs})


def test_lost_response_takes_effect_and_botocore_retry_sees_it(ctx: Context) -> None:
    with injected(Rule("ssm:PutParameter", "lose")) as plan, pytest.raises(ClientError) as refused:
        ssm().put_parameter(Name="/p", Value="v", Type="String")
    # The first attempt created the parameter; the retry is refused as a duplicate.
    assert refused.value.response["Error"]["Code"] == "ParameterAlreadyExists"
    assert ssm().get_parameter(Name="/p")["Parameter"]["Value"] == "v"
    assert plan.counts()["lose"] == 1


def test_lost_response_without_retries_reaches_the_caller(ctx: Context) -> None:
    once = ssm(config=Config(retries={"total_max_attempts": 1}))
    with injected(Rule("ssm:PutParameter", "lose")), pytest.raises(ConnectionClosedError):
        once.put_parameter(Name="/p", Value="v", Type="String")
    assert ssm().get_parameter(Name="/p")["Parameter"]["Value"] == "v"


def test_random_errors_and_throttling_are_retried_and_replay_for_a_seed(ctx: Context) -> None:
    ssm().put_parameter(Name="/p", Value="v", Type="String")

    def run() -> dict[str, int]:
        rules = (Rule("ssm:Get*", "error", None, rate=0.2), Rule("*", "throttle", None, rate=0.2))
        client = ssm()
        with injected(*rules, seed=7) as plan:
            for _ in range(30):
                assert client.get_parameter(Name="/p")["Parameter"]["Value"] == "v"
        return plan.counts()

    first = run()
    assert first["error"] > 0 and first["throttle"] > 0
    assert run() == first


def test_refusal_is_not_retried_and_after_lets_calls_through(ctx: Context) -> None:
    rule = Rule("ssm:PutParameter", "refuse", after=1, code="ValidationException", message="no")
    with injected(rule) as plan:
        ssm().put_parameter(Name="/a", Value="v", Type="String")
        with pytest.raises(ClientError) as refused:
            ssm().put_parameter(Name="/b", Value="v", Type="String")
        ssm().put_parameter(Name="/c", Value="v", Type="String")
    assert refused.value.response["Error"] == {"Code": "ValidationException", "Message": "no"}
    names = {p["Name"] for p in ssm().describe_parameters()["Parameters"]}
    assert names == {"/a", "/c"}
    assert plan.counts()["refuse"] == 1


def test_refusals_speak_each_protocol(ctx: Context) -> None:
    calls = {
        "ec2:CreateVpc": lambda: boto3.client("ec2", region_name=REGION).create_vpc(
            CidrBlock="10.0.0.0/16"
        ),
        "apigateway:CreateApiKey": lambda: boto3.client(
            "apigateway", region_name=REGION
        ).create_api_key(name="k"),
        "iam:CreateRole": lambda: boto3.client("iam").create_role(
            RoleName="r", AssumeRolePolicyDocument="{}"
        ),
        "s3:CreateBucket": lambda: boto3.client("s3", region_name=REGION).create_bucket(
            Bucket="b-faults"
        ),
        "kms:CreateKey": lambda: boto3.client("kms", region_name=REGION).create_key(),
    }
    for name, call in calls.items():
        rule = Rule(name, "refuse", code="Refused", message=name)
        with injected(rule), pytest.raises(ClientError) as refused:
            call()
        assert refused.value.response["Error"]["Code"] == "Refused", name
        assert refused.value.response["Error"]["Message"] == name


def test_delay_uses_the_injected_sleep(ctx: Context) -> None:
    slept: list[float] = []
    with injected(Rule("ssm:*", "delay", 2, seconds=1.5), sleep=slept.append):
        ssm().put_parameter(Name="/p", Value="v", Type="String")
        ssm().get_parameter(Name="/p")
        ssm().get_parameter(Name="/p")
    assert slept == [1.5, 1.5]


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="fault kind"):
        Rule("*", "explode")


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with LocalAws(port=0) as aws:
        aws.reset()
        yield aws.endpoint_url
    faults.deactivate()


def admin(url: str, method: str, plan: dict[str, Any] | None = None) -> Any:
    data = json.dumps(plan).encode() if plan is not None else None
    request = urllib.request.Request(f"{url}{faults.ADMIN_PATH}", data=data, method=method)
    with urllib.request.urlopen(request, timeout=5) as answer:
        return json.loads(answer.read())


def test_over_http_lost_create_and_rest_routes(server: str) -> None:
    rules = [
        {"match": "ec2:CreateVpc", "kind": "lose"},
        {"match": "apigateway:CreateApiKey", "kind": "refuse", "code": "Nope", "status": 409},
    ]
    assert admin(server, "POST", {"seed": 1, "rules": rules})["seed"] == 1
    ec2 = boto3.client(
        "ec2",
        region_name=REGION,
        endpoint_url=server,
        config=Config(retries={"total_max_attempts": 1}),
    )
    with pytest.raises(ClientError) as lost:
        ec2.create_vpc(CidrBlock="10.9.0.0/16")
    assert lost.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert "10.9.0.0/16" in {v["CidrBlock"] for v in ec2.describe_vpcs()["Vpcs"]}
    apigw = boto3.client("apigateway", region_name=REGION, endpoint_url=server)
    with pytest.raises(ClientError) as refused:
        apigw.create_api_key(name="k")
    assert refused.value.response["Error"]["Code"] == "Nope"
    answer = admin(server, "GET")
    assert answer["counts"]["lose"] == 1 and answer["counts"]["refuse"] == 1
    assert answer["injected"] == {"lose ec2:CreateVpc": 1, "refuse apigateway:CreateApiKey": 1}
    assert admin(server, "DELETE") == {"rules": []}
    assert apigw.create_api_key(name="k")["name"] == "k"


def test_plan_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    plan = {"seed": 3, "rules": [{"match": "*", "kind": "error", "times": None, "rate": 0.5}]}
    monkeypatch.setenv(faults.ENV, json.dumps(plan))
    recorded: list[tuple[type, str]] = []
    monkeypatch.setattr(
        "mlpipe.local.moto_ext._wrap", lambda cls, name, make: recorded.append((cls, name))
    )
    faults.install()
    try:
        found = faults.active()
        assert isinstance(found, Faults) and found.seed == 3 and found.rules[0].rate == 0.5
        assert [name for _, name in recorded] == ["__call__", "__call__"]
    finally:
        faults.deactivate()
