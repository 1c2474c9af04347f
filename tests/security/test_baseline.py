"""The VPC's default security group is empty, the VPC's traffic is logged to an encrypted log
group, and the state machine is encrypted with the pipeline key: read back after an apply."""

from __future__ import annotations

from typing import Any

import boto3

from mlpipe.core.context import Context
from mlpipe.core.resource import Resource
from mlpipe.resources import batch, ecr, flow_logs, iam, kms, network, workflow
from mlpipe.resources.network import DEFAULT_SG, VPC
from tests.resources.serving import needed
from tests.support import converge

REGION = "us-east-1"


def client(service: str) -> Any:
    return boto3.client(service, region_name=REGION)


def vpc_stack(ctx: Context) -> list[Resource]:
    return [
        *kms.resources(ctx),
        *iam.resources(ctx),
        *network.resources(ctx),
        *flow_logs.resources(ctx),
    ]


def stack(ctx: Context) -> list[Resource]:
    """What every test here reads: the VPC with its flow logs, and the workflow."""
    workflow_needs = [*ecr.resources(ctx), *batch.resources(ctx)]
    return [*vpc_stack(ctx), *needed(workflow.resources(ctx), workflow_needs)]


def default_group(vpc_id: str) -> dict[str, Any]:
    filters = [
        {"Name": "vpc-id", "Values": [vpc_id]},
        {"Name": "group-name", "Values": ["default"]},
    ]
    return client("ec2").describe_security_groups(Filters=filters)["SecurityGroups"][0]


def test_the_default_security_group_has_no_rules_and_stays_empty(
    ctx: Context, applied: dict[str, Any]
) -> None:
    outputs = applied
    vpc_id = outputs[VPC]["id"]
    group = default_group(vpc_id)
    assert group["GroupId"] == outputs[DEFAULT_SG]["id"]
    assert group["IpPermissions"] == [] and group["IpPermissionsEgress"] == []
    # A rule added behind mlpipe's back is revoked by the next apply.
    client("ec2").authorize_security_group_ingress(
        GroupId=group["GroupId"],
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            }
        ],
    )
    converge(vpc_stack(ctx))
    assert default_group(vpc_id)["IpPermissions"] == []


def test_vpc_flow_logs_go_to_an_encrypted_group_with_a_role_limited_to_it(
    ctx: Context, applied: dict[str, Any]
) -> None:
    outputs = applied
    names = ctx.names
    [flow] = client("ec2").describe_flow_logs(
        Filters=[{"Name": "resource-id", "Values": [outputs[VPC]["id"]]}]
    )["FlowLogs"]
    assert flow["TrafficType"] == "ALL"
    assert flow["LogDestinationType"] == "cloud-watch-logs"
    assert flow["LogGroupName"] == names.flow_log_group
    role = outputs[iam.role_key("flow-logs")]
    assert flow["DeliverLogsPermissionArn"] == role["arn"]
    [group] = client("logs").describe_log_groups(logGroupNamePrefix=names.flow_log_group)[
        "logGroups"
    ]
    assert group["kmsKeyId"] == outputs[kms.KEY]["arn"]
    assert group["retentionInDays"] == ctx.spec.monitoring.log_retention_days
    document = client("iam").get_role_policy(RoleName=role["name"], PolicyName="least-privilege")
    by_sid = {s["Sid"]: s for s in document["PolicyDocument"]["Statement"]}
    group_arn = f"arn:aws:logs:{REGION}:123456789012:log-group:{names.flow_log_group}:*"
    assert by_sid["DeliverFlowLogs"]["Resource"] == [group_arn]
    assert by_sid["FindLogGroup"]["Action"] == ["logs:DescribeLogGroups"]
    assert set(by_sid) == {"DeliverFlowLogs", "FindLogGroup"}


def test_the_state_machine_is_encrypted_with_the_pipeline_key(
    ctx: Context, applied: dict[str, Any]
) -> None:
    machine = client("stepfunctions").describe_state_machine(
        stateMachineArn=applied[workflow.STATE_MACHINE]["arn"]
    )
    assert machine["encryptionConfiguration"] == {
        "type": "CUSTOMER_MANAGED_KMS_KEY",
        "kmsKeyId": applied[kms.KEY]["arn"],
        "kmsDataKeyReusePeriodSeconds": 300,
    }
