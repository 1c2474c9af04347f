"""The network trusts only its account, and every service role is protected against confused
deputies: read back with boto3 after an apply on moto."""

from __future__ import annotations

import json
from typing import Any

import boto3

from mlpipe.core.context import Context
from mlpipe.core.resource import Resource
from mlpipe.resources import iam, kms, network
from mlpipe.resources.network import VPC
from tests.support import converge

REGION = "us-east-1"
ACCOUNT = "123456789012"
ACCOUNT_ONLY = {"StringEquals": {"aws:PrincipalAccount": ACCOUNT, "aws:ResourceAccount": ACCOUNT}}


def stack(ctx: Context) -> list[Resource]:
    """What the module builds once (``conftest.built``): the key, the roles and the network."""
    return [*kms.resources(ctx), *iam.resources(ctx), *network.resources(ctx)]


def live_endpoints(vpc_id: str) -> dict[str, dict[str, Any]]:
    ec2 = boto3.client("ec2", region_name=REGION)
    found = ec2.describe_vpc_endpoints(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])
    return {
        e["ServiceName"].split(f"{REGION}.", 1)[1]: e
        for e in found["VpcEndpoints"]
        if e["State"] != "deleted"
    }


def test_every_endpoint_policy_trusts_only_the_account(
    ctx: Context, applied: dict[str, Any]
) -> None:
    outputs = applied
    live = live_endpoints(outputs[VPC]["id"])
    assert len(live) == 2 + len(ctx.spec.network.interface_endpoints) == 9
    exceptions = []
    for service, endpoint in live.items():
        statements = json.loads(endpoint["PolicyDocument"])["Statement"]
        assert statements, service
        for statement in statements:
            assert statement["Effect"] == "Allow"
            if statement.get("Condition") == ACCOUNT_ONLY:
                continue
            exceptions.append((service, statement))
    # The one exception: ECR's layer bucket, reached with a URL ECR's own account signs.
    [(service, layers)] = exceptions
    assert service == "s3"
    assert layers["Action"] == ["s3:GetObject"]
    assert layers["Resource"] == ["arn:aws:s3:::prod-us-east-1-starport-layer-bucket/*"]


def test_an_interface_endpoint_policy_changed_behind_mlpipe_is_put_back(
    ctx: Context, applied: dict[str, Any]
) -> None:
    outputs = applied
    ec2 = boto3.client("ec2", region_name=REGION)
    endpoint_id = outputs[network.INTERFACE_ENDPOINTS]["ids"]["ssm"]
    anyone = {"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}]}
    ec2.modify_vpc_endpoint(VpcEndpointId=endpoint_id, PolicyDocument=json.dumps(anyone))
    converge(network.resources(ctx))
    document = live_endpoints(outputs[VPC]["id"])["ssm"]["PolicyDocument"]
    assert json.loads(document)["Statement"][0]["Condition"] == ACCOUNT_ONLY


def test_a_batch_image_of_another_registry_is_pulled_through_its_own_statement(
    ctx: Context,
) -> None:
    image = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.0-cpu-py310"
    spec = ctx.spec.model_copy(update={"batch": ctx.spec.batch.model_copy(update={"image": image})})
    document = network.interface_policy(Context(ctx.aws, spec, ctx.names), "ecr.dkr")
    pull = {s["Sid"]: s for s in document["Statement"]}["AccountPrincipalsPullBatchImage"]
    assert pull["Condition"]["StringEquals"] == {
        "aws:PrincipalAccount": ACCOUNT,
        "aws:ResourceAccount": "763104351884",
    }
    assert not any(a.startswith("ecr:Put") for a in pull["Action"])
    own = network.interface_policy(ctx, "ecr.dkr")["Statement"]
    assert [s["Sid"] for s in own] == ["AccountPrincipalsToAccountResources"]


def trust_of(purpose: str, names: Any) -> dict[str, Any]:
    role = boto3.client("iam", region_name=REGION).get_role(RoleName=names.role(purpose))
    [statement] = role["Role"]["AssumeRolePolicyDocument"]["Statement"]
    return statement


def test_service_roles_trust_only_their_source(ctx: Context, applied: dict[str, Any]) -> None:
    names, account = ctx.names, {"aws:SourceAccount": ACCOUNT}
    arn = f"arn:aws:%s:{REGION}:{ACCOUNT}:%s"
    expected_arns = {
        "batch-job": arn % ("ecs", "*"),
        "stepfunctions": arn % ("states", f"stateMachine:{names.state_machine}"),
        "events": arn % ("events", f"rule/{names.schedule_rule}"),
        "flow-logs": arn % ("ec2", "vpc-flow-log/*"),
    }
    # Services that document no source key for the role they assume (cited in iam.py).
    unconditioned = {"batch-execution", "apigateway-logs"}
    for purpose in iam.ROLES:
        statement = trust_of(purpose, names)
        if purpose in unconditioned:
            assert "Condition" not in statement, purpose
            continue
        condition = statement["Condition"]
        assert condition["StringEquals"] == account, purpose
        if purpose in expected_arns:
            assert condition["ArnLike"] == {"aws:SourceArn": expected_arns[purpose]}, purpose
        else:
            assert set(condition) == {"StringEquals"}, purpose
