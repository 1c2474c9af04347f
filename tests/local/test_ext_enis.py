"""The embedded AWS: a VPC Lambda's network interfaces block its subnet and security group until
Lambda, with the function's role, releases them after the window."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from mlpipe.local.moto_ext import install_extensions
from mlpipe.local.moto_ext import windows as ext_windows

REGION = "us-east-1"
TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch, fake_credentials: None) -> Iterator[Clock]:
    clock = Clock()
    monkeypatch.setattr(ext_windows, "clock", clock)
    monkeypatch.setenv("MLPIPE_LOCAL_ENI_RELEASE_WINDOW", "30")
    with mock_aws():
        install_extensions()
        yield clock


def _package() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return event\n")
    return buffer.getvalue()


def _network() -> tuple[Any, list[str], str]:
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.9.{i}.0/24")["Subnet"]["SubnetId"]
        for i in range(2)
    ]
    group = ec2.create_security_group(GroupName="fn", Description="fn", VpcId=vpc)["GroupId"]
    return ec2, subnets, group


def _function(name: str, subnets: list[str], group: str, role: str = "fn-role") -> str:
    iam = boto3.client("iam", region_name=REGION)
    try:
        arn = iam.get_role(RoleName=role)["Role"]["Arn"]
    except ClientError:
        arn = iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(TRUST))["Role"][
            "Arn"
        ]
    boto3.client("lambda", region_name=REGION).create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=arn,
        Handler="handler.handler",
        Code={"ZipFile": _package()},
        VpcConfig={"SubnetIds": subnets, "SecurityGroupIds": [group]},
    )
    return role


def _lambda_enis(ec2: Any) -> list[dict[str, Any]]:
    return ec2.describe_network_interfaces(
        Filters=[{"Name": "description", "Values": ["AWS Lambda VPC ENI-*"]}]
    )["NetworkInterfaces"]


def _refused(call: Any, **params: Any) -> str:
    with pytest.raises(ClientError) as caught:
        call(**params)
    return caught.value.response["Error"]["Code"]


def test_a_vpc_function_owns_one_interface_per_subnet_shared_by_functions(clock: Clock) -> None:
    ec2, subnets, group = _network()
    _function("one", subnets, group)
    _function("two", subnets, group)
    enis = _lambda_enis(ec2)
    assert sorted(e["SubnetId"] for e in enis) == sorted(subnets)
    for eni in enis:
        assert eni["InterfaceType"] == "lambda"
        assert eni["Status"] == "in-use"
        assert eni["RequesterManaged"] is True
        assert eni["Description"].startswith("AWS Lambda VPC ENI-one-")
        assert [g["GroupId"] for g in eni["Groups"]] == [group]


def test_interfaces_block_the_subnet_and_group_until_released_after_the_window(
    clock: Clock,
) -> None:
    ec2, subnets, group = _network()
    _function("one", subnets, group)
    lam = boto3.client("lambda", region_name=REGION)
    assert _refused(ec2.delete_subnet, SubnetId=subnets[0]) == "DependencyViolation"
    assert _refused(ec2.delete_security_group, GroupId=group) == "DependencyViolation"
    eni = _lambda_enis(ec2)[0]["NetworkInterfaceId"]
    assert _refused(ec2.delete_network_interface, NetworkInterfaceId=eni) == (
        "InvalidParameterValue"
    )

    lam.delete_function(FunctionName="one")
    clock.now += 29  # still within the release window
    assert len(_lambda_enis(ec2)) == 2
    assert _refused(ec2.delete_subnet, SubnetId=subnets[0]) == "DependencyViolation"

    clock.now += 2
    assert _lambda_enis(ec2) == []
    for subnet in subnets:
        ec2.delete_subnet(SubnetId=subnet)
    ec2.delete_security_group(GroupId=group)


def test_a_shared_interface_stays_while_another_function_uses_it(clock: Clock) -> None:
    ec2, subnets, group = _network()
    _function("one", subnets, group)
    _function("two", subnets, group)
    boto3.client("lambda", region_name=REGION).delete_function(FunctionName="one")
    clock.now += 3600
    assert len(_lambda_enis(ec2)) == 2


def test_interfaces_are_stranded_when_the_role_goes_first(clock: Clock) -> None:
    ec2, subnets, group = _network()
    role = _function("one", subnets, group)
    boto3.client("lambda", region_name=REGION).delete_function(FunctionName="one")
    boto3.client("iam", region_name=REGION).delete_role(RoleName=role)
    clock.now += 3600
    stranded = _lambda_enis(ec2)
    assert len(stranded) == 2
    assert {e["Status"] for e in stranded} == {"available"}
    assert _refused(ec2.delete_subnet, SubnetId=subnets[0]) == "DependencyViolation"
    assert _refused(ec2.delete_security_group, GroupId=group) == "DependencyViolation"
    # Only their owner deleting them by hand frees the subnet.
    for eni in stranded:
        ec2.delete_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"])
    ec2.delete_subnet(SubnetId=subnets[0])
    ec2.delete_security_group(GroupId=group)


def test_the_release_window_is_on_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlpipe.local.moto_ext import enis as ext_enis

    monkeypatch.delenv("MLPIPE_LOCAL_ENI_RELEASE_WINDOW", raising=False)
    assert ext_enis.release_window() > 0
    monkeypatch.setenv("MLPIPE_LOCAL_ENI_RELEASE_WINDOW", "0.25")
    assert ext_enis.release_window() == 0.25
