"""Physical names derived from versions cannot collide and stay within AWS's limits."""

from __future__ import annotations

import re

import boto3

from mlpipe.core.context import Context
from mlpipe.spec import MODEL_NAME_LIMIT, Names

SAGEMAKER_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9])*")


def test_versions_that_sanitise_alike_get_different_models() -> None:
    names = Names("ml-pipeline", "prod")
    assert names.model("v5.0.0-rc.1") != names.model("v5.0.0-rc-1")
    assert names.model("v1.0.0") == "ml-pipeline-prod-model-v1-0-0"  # plain versions unchanged


def test_model_names_are_injective_and_within_the_limit() -> None:
    names = Names("a-much-longer-pipeline-name", "production")
    versions = [
        "v1.0.0",
        "v1.0.0-rc.1",
        "v1.0.0-rc-1",
        "v1.0.0-rc1",
        "v10.0.0",
        "v1.0.0-" + "x" * 56,
        "v1.0.0-" + "x" * 55 + "y",
    ]
    models = [names.model(v) for v in versions]
    assert len(set(models)) == len(versions)
    for model in models:
        assert len(model) <= MODEL_NAME_LIMIT and SAGEMAKER_NAME.fullmatch(model), model


def test_embedded_aws_returns_the_first_result_for_a_repeated_client_token(ctx: Context) -> None:
    ec2 = boto3.client("ec2", region_name="us-east-1")
    vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    first = ec2.create_route_table(VpcId=vpc, ClientToken="t-1")["RouteTable"]["RouteTableId"]
    again = ec2.create_route_table(VpcId=vpc, ClientToken="t-1")["RouteTable"]["RouteTableId"]
    other = ec2.create_route_table(VpcId=vpc, ClientToken="t-2")["RouteTable"]["RouteTableId"]
    assert first == again != other
    params = {"VpcId": vpc, "ServiceName": "com.amazonaws.us-east-1.s3"}
    made = ec2.create_vpc_endpoint(**params, ClientToken="e-1")["VpcEndpoint"]["VpcEndpointId"]
    same = ec2.create_vpc_endpoint(**params, ClientToken="e-1")["VpcEndpoint"]["VpcEndpointId"]
    assert made == same
    listed = ec2.describe_vpc_endpoints(Filters=[{"Name": "vpc-id", "Values": [vpc]}])
    assert len(listed["VpcEndpoints"]) == 1
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="flow-log-bucket")
    logs = {
        "ResourceIds": [vpc],
        "ResourceType": "VPC",
        "TrafficType": "ALL",
        "LogDestinationType": "s3",
        "LogDestination": "arn:aws:s3:::flow-log-bucket",
    }
    flow = ec2.create_flow_logs(**logs, ClientToken="f-1")
    repeated = ec2.create_flow_logs(**logs, ClientToken="f-1")
    assert repeated["FlowLogIds"] == flow["FlowLogIds"] and not repeated["Unsuccessful"]
    assert len(ec2.describe_flow_logs()["FlowLogs"]) == 1
