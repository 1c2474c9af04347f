"""The model and data buckets: versioned, SSE-KMS, private, TLS-only, with lifecycle rules,
and server access logs in a bucket of their own."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from mlpipe.core.context import Context
from mlpipe.core.diff import policy
from mlpipe.core.errors import MlpipeError, error_code
from mlpipe.core.resource import AspectResource, Observed, Outputs, Refs, Resource
from mlpipe.core.tagging import sync_tags
from mlpipe.resources.kms import KEY

ACCESS_LOGS = "s3:access-logs"
PUBLIC_ACCESS_BLOCKED = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}


def _rule(rule_id: str, prefix: str = "", **actions: Any) -> dict[str, Any]:
    return {"ID": rule_id, "Status": "Enabled", "Filter": {"Prefix": prefix}, **actions}


def _normal_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """A live lifecycle rule in the shape mlpipe writes, so the two compare."""
    filt = rule.get("Filter") or {}
    out = _rule(rule.get("ID", ""), filt.get("Prefix", rule.get("Prefix", "")))
    out["Status"] = rule.get("Status")
    for action, field in (
        ("Expiration", "Days"),
        ("NoncurrentVersionExpiration", "NoncurrentDays"),
        ("AbortIncompleteMultipartUpload", "DaysAfterInitiation"),
    ):
        if field in rule.get(action, {}):
            out[action] = {field: rule[action][field]}
    return out


class Bucket(AspectResource):
    kind = "s3"
    tagging = "s3"
    tag_id = "name"

    def __init__(
        self,
        ctx: Context,
        name: str,
        physical: str,
        rules: list[dict[str, Any]],
        retain: bool,
        logged: bool = True,
        keyed: bool = True,
    ) -> None:
        depends_on = ((KEY,) if keyed else ()) + ((ACCESS_LOGS,) if logged else ())
        super().__init__(ctx, name, physical, depends_on=depends_on)
        self.rules = sorted(rules, key=lambda r: r["ID"])
        self.retain = retain
        self.logged = logged

    @property
    def arn(self) -> str:
        return f"arn:{self.ctx.aws.partition}:s3:::{self.physical}"

    def _get(self, operation: str, pick: Callable[[Any], Any]) -> Any:
        """`pick` of the bucket's configuration; None when it has none."""
        found = self.find("s3", operation, Bucket=self.physical)
        return None if found is None else pick(found)

    def read(self) -> Observed | None:
        try:
            if self.find("s3", "head_bucket", Bucket=self.physical) is None:
                return None
        except ClientError as exc:
            if error_code(exc) in ("403", "AccessDenied"):
                raise MlpipeError(
                    f"bucket {self.physical} exists but belongs to another account: S3 names are "
                    "global; change pipeline or environment in the spec"
                ) from exc
            raise
        state = {
            "Versioning": self._get("get_bucket_versioning", lambda r: r.get("Status")),
            "Encryption": self._get(
                "get_bucket_encryption",
                lambda r: _encryption(r["ServerSideEncryptionConfiguration"]["Rules"][0]),
            ),
            "PublicAccessBlock": self._get(
                "get_public_access_block", lambda r: r["PublicAccessBlockConfiguration"]
            ),
            "Ownership": self._get(
                "get_bucket_ownership_controls",
                lambda r: r["OwnershipControls"]["Rules"][0]["ObjectOwnership"],
            ),
            "Lifecycle": self._get(
                "get_bucket_lifecycle_configuration",
                lambda r: sorted((_normal_rule(x) for x in r["Rules"]), key=lambda x: x["ID"]),
            ),
            "Policy": self._get("get_bucket_policy", lambda r: policy(r["Policy"])),
            "Logging": self._get("get_bucket_logging", _logging),
            "Tags": self.live_tags(self.physical),
        }
        return Observed(state, self._outputs(), self.ctx.owns(state["Tags"]))

    def _outputs(self) -> Outputs:
        return {"name": self.physical, "arn": self.arn}

    def desired(self, refs: Refs) -> dict[str, Any]:
        return {
            "Versioning": "Enabled",
            "Encryption": {
                "SSEAlgorithm": "aws:kms",
                "KMSMasterKeyID": refs(KEY, "arn"),
                "BucketKeyEnabled": True,
            },
            "PublicAccessBlock": PUBLIC_ACCESS_BLOCKED,
            "Ownership": "BucketOwnerEnforced",
            "Lifecycle": self.rules,
            "Policy": policy(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "DenyInsecureTransport",
                            "Effect": "Deny",
                            "Principal": "*",
                            "Action": "s3:*",
                            "Resource": [self.arn, f"{self.arn}/*"],
                            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                        }
                    ],
                }
            ),
            "Logging": {
                "TargetBucket": self.ctx.names.access_log_bucket,
                "TargetPrefix": f"{self.physical}/",
            }
            if self.logged
            else None,
            "Tags": self.tags,
        }

    def aspects(self) -> dict[str, Callable[[Any], None]]:
        s3, bucket = self.client("s3"), self.physical
        return {
            "PublicAccessBlock": lambda v: s3.put_public_access_block(
                Bucket=bucket, PublicAccessBlockConfiguration=v
            ),
            "Ownership": lambda v: s3.put_bucket_ownership_controls(
                Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": v}]}
            ),
            "Encryption": lambda v: s3.put_bucket_encryption(
                Bucket=bucket,
                ServerSideEncryptionConfiguration={
                    "Rules": [
                        {
                            "ApplyServerSideEncryptionByDefault": {
                                k: v[k] for k in ("SSEAlgorithm", "KMSMasterKeyID") if v.get(k)
                            },
                            "BucketKeyEnabled": v["BucketKeyEnabled"],
                        }
                    ]
                },
            ),
            "Versioning": lambda v: s3.put_bucket_versioning(
                Bucket=bucket, VersioningConfiguration={"Status": v}
            ),
            "Lifecycle": lambda v: s3.put_bucket_lifecycle_configuration(
                Bucket=bucket, LifecycleConfiguration={"Rules": v}
            ),
            "Policy": lambda v: s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(v)),
            "Logging": lambda v: s3.put_bucket_logging(
                Bucket=bucket, BucketLoggingStatus={"LoggingEnabled": v}
            ),
        }

    def create(self, desired: dict[str, Any]) -> Outputs:
        s3, region = self.client("s3"), self.ctx.aws.region
        params: dict[str, Any] = {"Bucket": self.physical, "ObjectOwnership": "BucketOwnerEnforced"}
        if region != "us-east-1":
            params["CreateBucketConfiguration"] = {"LocationConstraint": region}
        s3.create_bucket(**params)
        self.ctx.eventually(lambda: s3.head_bucket(Bucket=self.physical), "s3-bucket-not-visible")
        # Tags first, so the bucket is recognisably mlpipe's even if a later call fails.
        sync_tags(s3, self.physical, {}, desired["Tags"])
        self.apply_aspects(desired, None)
        return self._outputs()

    def delete(self, observed: Observed) -> None:
        s3 = self.client("s3")
        pages = s3.get_paginator("list_object_versions").paginate(Bucket=self.physical)
        for page in pages:
            doomed = [
                {"Key": v["Key"], "VersionId": v["VersionId"]}
                for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
            ]
            for start in range(0, len(doomed), 1000):
                s3.delete_objects(
                    Bucket=self.physical,
                    Delete={"Objects": doomed[start : start + 1000], "Quiet": True},
                )
        s3.delete_bucket(Bucket=self.physical)


class AccessLogBucket(Bucket):
    """Where S3 delivers the server access logs of the other buckets. S3-managed encryption:
    log delivery does not support SSE-KMS destination buckets
    (https://docs.aws.amazon.com/AmazonS3/latest/userguide/enable-server-access-logging.html).
    Only the logging service, for this account's buckets, may write (the bucket-policy form of
    that page; object ownership is enforced, so no ACL grant)."""

    def __init__(self, ctx: Context, sources: list[str]) -> None:
        days = ctx.spec.storage.access_logs.expiration_days
        rules = [
            _rule("expire-logs", Expiration={"Days": days}),
            # Expired logs become noncurrent versions: remove those the day after.
            _rule("remove-expired-logs", NoncurrentVersionExpiration={"NoncurrentDays": 1}),
        ]
        super().__init__(
            ctx,
            "access-logs",
            ctx.names.access_log_bucket,
            rules,
            retain=False,
            logged=False,
            keyed=False,
        )
        self.sources = sources

    def desired(self, refs: Refs) -> dict[str, Any]:
        desired = super().desired(refs)
        desired["Encryption"] = {
            "SSEAlgorithm": "AES256",
            "KMSMasterKeyID": None,
            "BucketKeyEnabled": False,
        }
        part = self.ctx.aws.partition
        delivery = {
            "Sid": "S3ServerAccessLogs",
            "Effect": "Allow",
            "Principal": {"Service": "logging.s3.amazonaws.com"},
            "Action": "s3:PutObject",
            "Resource": f"{self.arn}/*",
            "Condition": {
                "ArnLike": {"aws:SourceArn": [f"arn:{part}:s3:::{b}" for b in self.sources]},
                "StringEquals": {"aws:SourceAccount": self.ctx.aws.account},
            },
        }
        statements = desired["Policy"]["Statement"]
        desired["Policy"] = policy({"Version": "2012-10-17", "Statement": [*statements, delivery]})
        return desired


def _logging(answer: dict[str, Any]) -> dict[str, Any] | None:
    enabled = answer.get("LoggingEnabled")
    if not enabled:
        return None
    return {"TargetBucket": enabled["TargetBucket"], "TargetPrefix": enabled["TargetPrefix"]}


def _encryption(rule: dict[str, Any]) -> dict[str, Any]:
    default = rule["ApplyServerSideEncryptionByDefault"]
    return {
        "SSEAlgorithm": default.get("SSEAlgorithm"),
        "KMSMasterKeyID": default.get("KMSMasterKeyID"),
        "BucketKeyEnabled": bool(rule.get("BucketKeyEnabled", False)),
    }


def resources(ctx: Context) -> list[Resource]:
    storage, names = ctx.spec.storage, ctx.names
    abort = {"AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}}
    return [
        AccessLogBucket(ctx, [names.model_bucket, names.data_bucket]),
        Bucket(
            ctx,
            "models",
            names.model_bucket,
            [
                _rule(
                    "archive-old-versions",
                    NoncurrentVersionExpiration={
                        "NoncurrentDays": storage.model_bucket.noncurrent_version_expiration_days
                    },
                    **abort,
                )
            ],
            retain=storage.model_bucket.retain_on_destroy,
        ),
        Bucket(
            ctx,
            "data",
            names.data_bucket,
            [
                _rule(
                    "expire-raw",
                    storage.data_bucket.raw_prefix,
                    Expiration={"Days": storage.data_bucket.raw_expiration_days},
                ),
                _rule("abort-incomplete-uploads", **abort),
            ],
            retain=False,
        ),
    ]
