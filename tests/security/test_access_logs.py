"""Server access logs of the model and data buckets go to a bucket of their own; the embedded
AWS checks the logging grant of a target bucket as S3 does."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from mlpipe.core.context import Context
from mlpipe.core.plan import Action, plan_destroy
from mlpipe.resources import kms, s3
from tests.support import four_step

REGION = "us-east-1"
ACCOUNT = "123456789012"


def client() -> Any:
    return boto3.client("s3", region_name=REGION)


def test_both_buckets_log_to_a_dedicated_tls_only_sse_s3_bucket(ctx: Context) -> None:
    four_step(ctx, [*kms.resources(ctx), *s3.resources(ctx)])
    names, s3c = ctx.names, client()
    logs = names.access_log_bucket
    for bucket in (names.model_bucket, names.data_bucket):
        enabled = s3c.get_bucket_logging(Bucket=bucket)["LoggingEnabled"]
        assert enabled == {"TargetBucket": logs, "TargetPrefix": f"{bucket}/"}
    assert s3c.get_bucket_versioning(Bucket=logs)["Status"] == "Enabled"
    [rule] = s3c.get_bucket_encryption(Bucket=logs)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    ownership = s3c.get_bucket_ownership_controls(Bucket=logs)["OwnershipControls"]
    assert ownership["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    assert all(s3c.get_public_access_block(Bucket=logs)["PublicAccessBlockConfiguration"].values())
    statements = {
        s["Sid"]: s for s in json.loads(s3c.get_bucket_policy(Bucket=logs)["Policy"])["Statement"]
    }
    assert statements["DenyInsecureTransport"]["Condition"] == {
        "Bool": {"aws:SecureTransport": "false"}
    }
    delivery = statements["S3ServerAccessLogs"]
    assert delivery["Principal"] == {"Service": ["logging.s3.amazonaws.com"]}
    assert delivery["Action"] == ["s3:PutObject"]
    assert delivery["Resource"] == [f"arn:aws:s3:::{logs}/*"]
    assert delivery["Condition"] == {
        "ArnLike": {
            "aws:SourceArn": [
                f"arn:aws:s3:::{names.model_bucket}",
                f"arn:aws:s3:::{names.data_bucket}",
            ]
        },
        "StringEquals": {"aws:SourceAccount": ACCOUNT},
    }
    rules = {r["ID"]: r for r in s3c.get_bucket_lifecycle_configuration(Bucket=logs)["Rules"]}
    days = ctx.spec.storage.access_logs.expiration_days
    assert rules["expire-logs"]["Expiration"] == {"Days": days}
    assert rules["remove-expired-logs"]["NoncurrentVersionExpiration"]["NoncurrentDays"] == 1


def test_destroy_deletes_the_log_bucket_like_the_data_bucket(ctx: Context) -> None:
    resources = [*kms.resources(ctx), *s3.resources(ctx)]
    four_step(ctx, resources)
    actions = {s.key: s.action for s in plan_destroy(resources).steps}
    assert actions[s3.ACCESS_LOGS] == actions["s3:data"] == Action.DELETE
    assert actions["s3:models"] == Action.NOOP  # retained unless --force


def make_target(policy: dict[str, Any] | None) -> None:
    s3c = client()
    s3c.create_bucket(Bucket="source")
    s3c.create_bucket(Bucket="target")
    if policy is not None:
        s3c.put_bucket_policy(Bucket="target", Policy=json.dumps(policy))


def enable_logging(prefix: str = "source/") -> None:
    client().put_bucket_logging(
        Bucket="source",
        BucketLoggingStatus={"LoggingEnabled": {"TargetBucket": "target", "TargetPrefix": prefix}},
    )


def grant(**statement: Any) -> dict[str, Any]:
    base = {
        "Effect": "Allow",
        "Principal": {"Service": ["logging.s3.amazonaws.com"]},
        "Action": ["s3:PutObject"],
        "Resource": ["arn:aws:s3:::target/*"],
    }
    deny_http = {
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": "arn:aws:s3:::target/*",
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    return {"Version": "2012-10-17", "Statement": [deny_http, {**base, **statement}]}


@pytest.mark.parametrize(
    "policy",
    [
        grant(),
        grant(
            Resource="arn:aws:s3:::target/source/*",
            Principal={"Service": "logging.s3.amazonaws.com"},
        ),
        grant(Action="s3:Put*"),
    ],
    ids=["lists", "strings-and-prefix", "action-wildcard"],
)
def test_a_target_granting_the_logging_service_in_any_iam_form_is_accepted(
    ctx: Context, policy: dict[str, Any]
) -> None:
    make_target(policy)
    enable_logging()
    assert (
        client().get_bucket_logging(Bucket="source")["LoggingEnabled"]["TargetBucket"] == "target"
    )


@pytest.mark.parametrize(
    "policy",
    [
        None,
        grant(Effect="Deny"),
        grant(Principal={"Service": ["delivery.logs.amazonaws.com"]}),
        grant(Action=["s3:GetObject"]),
        grant(Resource=["arn:aws:s3:::target/other/*"]),
    ],
    ids=["no-policy", "deny", "other-service", "other-action", "other-prefix"],
)
def test_a_target_without_the_logging_grant_is_refused(
    ctx: Context, policy: dict[str, Any] | None
) -> None:
    make_target(policy)
    with pytest.raises(ClientError) as caught:
        enable_logging()
    assert caught.value.response["Error"]["Code"] == "InvalidTargetBucketForLogging"
