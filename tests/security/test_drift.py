"""A security setting undone behind mlpipe's back shows as drift and the next apply restores it."""

from __future__ import annotations

import json
from typing import Any

import boto3

from mlpipe.core.context import Context
from mlpipe.core.plan import plan_apply
from mlpipe.core.resource import Resource
from mlpipe.resources import batch, ecr, iam, kms, network, s3, workflow
from tests.resources.serving import needed
from tests.resources.test_workflow import stack as workflow_stack
from tests.support import converge

REGION = "us-east-1"


def client(service: str) -> Any:
    return boto3.client(service, region_name=REGION)


def stack(ctx: Context) -> list[Resource]:
    """What every test here drifts: the key, every role, the buckets and the workflow."""
    workflow_needs = [*network.resources(ctx), *ecr.resources(ctx), *batch.resources(ctx)]
    return [
        *kms.resources(ctx),
        *iam.resources(ctx),
        *s3.resources(ctx),
        *needed(workflow.resources(ctx), workflow_needs),
    ]


def drifted(resources: list[Any]) -> dict[str, list[str]]:
    """resource key → the top-level properties that differ."""
    return {
        s.key: sorted({p.split(".")[0] for p in s.diff.paths()})
        for s in plan_apply(resources).changes
    }


def test_access_logging_turned_off_is_turned_on_again(
    ctx: Context, applied: dict[str, Any]
) -> None:
    resources = [*kms.resources(ctx), *s3.resources(ctx)]
    client("s3").put_bucket_logging(Bucket=ctx.names.data_bucket, BucketLoggingStatus={})
    assert drifted(resources) == {"s3:data": ["Logging"]}
    converge(resources)
    enabled = client("s3").get_bucket_logging(Bucket=ctx.names.data_bucket)["LoggingEnabled"]
    assert enabled["TargetBucket"] == ctx.names.access_log_bucket
    assert not plan_apply(resources).changes


def test_a_trust_policy_stripped_of_its_source_condition_is_restored(
    ctx: Context, applied: dict[str, Any]
) -> None:
    resources = [*kms.resources(ctx), *iam.resources(ctx)]
    name = ctx.names.role("stepfunctions")
    bare = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "states.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    client("iam").update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(bare))
    assert drifted(resources) == {iam.role_key("stepfunctions"): ["AssumeRolePolicy"]}
    converge(resources)
    [statement] = client("iam").get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"][
        "Statement"
    ]
    assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": "123456789012"}


def test_a_state_machine_moved_to_an_aws_owned_key_is_moved_back(
    ctx: Context, applied: dict[str, Any]
) -> None:
    arn = applied[workflow.STATE_MACHINE]["arn"]
    client("stepfunctions").update_state_machine(
        stateMachineArn=arn, encryptionConfiguration={"type": "AWS_OWNED_KEY"}
    )
    assert drifted(workflow_stack(ctx)) == {workflow.STATE_MACHINE: ["EncryptionConfiguration"]}
    converge(workflow_stack(ctx))
    machine = client("stepfunctions").describe_state_machine(stateMachineArn=arn)
    assert machine["encryptionConfiguration"]["type"] == "CUSTOMER_MANAGED_KMS_KEY"
    assert machine["encryptionConfiguration"]["kmsKeyId"] == applied[kms.KEY]["arn"]
