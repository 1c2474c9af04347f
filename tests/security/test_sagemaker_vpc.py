"""The SageMaker models run in the isolated subnets, in a security group that only reaches S3,
with network isolation; the embedded AWS keeps the isolation flag as SageMaker does."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from mlpipe.core.context import Context
from mlpipe.resources import network
from mlpipe.resources.network import rules
from tests.resources.endpoint_support import fake_time, resources
from tests.support import four_step

REGION = "us-east-1"


def client(service: str) -> Any:
    return boto3.client(service, region_name=REGION)


def test_models_run_isolated_in_the_private_subnets(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_time(monkeypatch, ctx)
    outputs = four_step(ctx, resources(ctx)).outputs
    subnets = sorted(outputs[k]["id"] for k in network.subnet_keys(ctx.spec))
    group_id = outputs[network.SG_SAGEMAKER]["id"]
    for version in ctx.spec.models.versions:
        model = client("sagemaker").describe_model(ModelName=ctx.names.model(version))
        assert sorted(model["VpcConfig"]["Subnets"]) == subnets
        assert model["VpcConfig"]["SecurityGroupIds"] == [group_id]
        assert model["EnableNetworkIsolation"] is True
    group = client("ec2").describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
    s3_list = next(
        p["PrefixListId"]
        for p in client("ec2").describe_prefix_lists()["PrefixLists"]
        if p["PrefixListName"] == f"com.amazonaws.{REGION}.s3"
    )
    assert rules(group["IpPermissions"]) == []
    assert rules(group["IpPermissionsEgress"]) == [
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "PrefixListId": s3_list}
    ]


@pytest.mark.parametrize("isolated", [True, False])
def test_create_model_keeps_network_isolation(ctx: Context, isolated: bool) -> None:
    sm = client("sagemaker")
    sm.create_model(
        ModelName="m",
        PrimaryContainer={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/i:1"},
        ExecutionRoleArn="arn:aws:iam::123456789012:role/r",
        EnableNetworkIsolation=isolated,
    )
    assert sm.describe_model(ModelName="m")["EnableNetworkIsolation"] is isolated
