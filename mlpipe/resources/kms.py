"""The pipeline's customer-managed KMS key, found through its alias or else by its tags."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from botocore.exceptions import ClientError

from mlpipe.core.context import Context
from mlpipe.core.diff import Diff, policy, tags_to_list
from mlpipe.core.errors import error_code
from mlpipe.core.resource import Observed, Outputs, Refs, Resource

KEY = "kms:key"
GONE = ("PendingDeletion", "PendingReplicaDeletion")


class KmsKey(Resource):
    kind = "kms"
    tagging = "kms"
    tag_id = "id"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, "key", ctx.names.kms_alias)
        # Kept while data destroy keeps is encrypted with it (the model bucket, a protected
        # table): a key scheduled for deletion would leave that data unreadable.
        storage = ctx.spec.storage
        self.retain = (
            storage.model_bucket.retain_on_destroy or storage.predictions_table.deletion_protection
        )

    def _key(self, key_id: str) -> dict[str, Any] | None:
        """The key's metadata; None once it is gone or scheduled for deletion."""
        found = self.find("kms", "describe_key", KeyId=key_id)
        meta = found["KeyMetadata"] if found else None
        return None if meta is None or meta["KeyState"] in GONE else dict(meta)

    def _tagged(self) -> list[dict[str, Any]]:
        """The pipeline's live keys, found by their tags (a key whose alias failed has none)."""
        found = (self._key(arn) for arn in self.ctx.tagged(self.key, "kms:key"))
        return [meta for meta in found if meta is not None]

    def read(self) -> Observed | None:
        aliased = self._key(self.physical)
        tagged = [m for m in self._tagged() if aliased is None or m["KeyId"] != aliased["KeyId"]]
        kept, *extras = ([aliased] if aliased else []) + tagged or [None]
        if kept is None:
            return None
        observed = self._observe(kept, aliased is not None)
        return replace(observed, extras=tuple(self._observe(m, False) for m in extras))

    def _observe(self, meta: dict[str, Any], aliased: bool) -> Observed:
        kms, key_id = self.client("kms"), meta["KeyId"]
        tags = self.live_tags(key_id)
        state = {
            "Description": meta.get("Description", ""),
            "Enabled": meta["KeyState"] == "Enabled",
            "KeyRotationEnabled": kms.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"],
            "Policy": policy(kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"]),
            "Alias": self.physical if aliased else None,
            "Tags": tags,
        }
        return Observed(state, {"id": key_id, "arn": meta["Arn"]}, self.ctx.owns(tags))

    def desired(self, refs: Refs) -> dict[str, Any]:
        return {
            "Description": f"mlpipe {self.ctx.names.pipeline_id}: encryption at rest",
            "Enabled": True,
            "KeyRotationEnabled": self.ctx.spec.kms.rotation,
            "Policy": policy(self._policy()),
            "Alias": self.physical,
            "Tags": self.tags,
        }

    def _policy(self) -> dict[str, Any]:
        aws = self.ctx.aws
        account, region, part = aws.account, aws.region, aws.partition
        return {
            "Version": "2012-10-17",
            "Statement": [
                {
                    # IAM policies of the account decide who else may use the key.
                    "Sid": "AccountAdministers",
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:{part}:iam::{account}:root"},
                    "Action": "kms:*",
                    "Resource": "*",
                },
                {
                    # CloudWatch Logs encrypts the pipeline's log groups with this key.
                    "Sid": "CloudWatchLogs",
                    "Effect": "Allow",
                    "Principal": {"Service": f"logs.{region}.amazonaws.com"},
                    "Action": [
                        "kms:Decrypt",
                        "kms:Describe*",
                        "kms:Encrypt",
                        "kms:GenerateDataKey*",
                        "kms:ReEncrypt*",
                    ],
                    "Resource": "*",
                    "Condition": {
                        "ArnLike": {
                            "kms:EncryptionContext:aws:logs:arn": (
                                f"arn:{part}:logs:{region}:{account}:log-group:*"
                            )
                        }
                    },
                },
                {
                    # Vended log delivery writes the encrypted state machine's execution logs
                    # (https://docs.aws.amazon.com/step-functions/latest/dg/
                    # encryption-at-rest.html).
                    "Sid": "VendedLogDelivery",
                    "Effect": "Allow",
                    "Principal": {"Service": "delivery.logs.amazonaws.com"},
                    "Action": "kms:Decrypt",
                    "Resource": "*",
                },
                {
                    # Alarms and schedules publish to the encrypted alert topic.
                    "Sid": "AlertPublishers",
                    "Effect": "Allow",
                    "Principal": {"Service": ["cloudwatch.amazonaws.com", "events.amazonaws.com"]},
                    "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                    "Resource": "*",
                    "Condition": {"StringEquals": {"aws:SourceAccount": account}},
                },
            ],
        }

    def create(self, desired: dict[str, Any]) -> Outputs:
        tags = tags_to_list(self.ctx.creation_tags(desired["Tags"]), "TagKey", "TagValue")

        def create(kms: Any) -> dict[str, Any]:
            return dict(
                kms.create_key(
                    Description=desired["Description"],
                    KeyUsage="ENCRYPT_DECRYPT",
                    KeySpec="SYMMETRIC_DEFAULT",
                    Policy=json.dumps(desired["Policy"]),
                    Tags=tags,
                )["KeyMetadata"]
            )

        meta = self.create_once("kms", create, lambda: next(iter(self._tagged()), None))
        key_id = meta["KeyId"]
        if desired["KeyRotationEnabled"]:
            self.client("kms").enable_key_rotation(KeyId=key_id)
        self._point_alias(key_id)
        return {"id": key_id, "arn": meta["Arn"]}

    def _point_alias(self, key_id: str) -> None:
        kms = self.client("kms")
        try:
            kms.create_alias(AliasName=self.physical, TargetKeyId=key_id)
        except ClientError as exc:
            # https://docs.aws.amazon.com/kms/latest/APIReference/API_CreateAlias.html: the
            # alias names a key already (it outlives a key scheduled for deletion): move it.
            if error_code(exc) != "AlreadyExistsException":
                raise
            kms.update_alias(AliasName=self.physical, TargetKeyId=key_id)

    def update(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> Outputs:
        kms, key = self.client("kms"), {"KeyId": observed.outputs["id"]}
        rotate = (
            kms.enable_key_rotation if desired["KeyRotationEnabled"] else kms.disable_key_rotation
        )
        setters: dict[str, Callable[[Any], Any]] = {  # the key's id: its alias is not enough
            "Description": lambda v: kms.update_key_description(**key, Description=v),
            "Enabled": lambda _: kms.enable_key(**key),
            "KeyRotationEnabled": lambda _: rotate(**key),
            "Policy": lambda v: kms.put_key_policy(
                **key, PolicyName="default", Policy=json.dumps(v)
            ),
            # A key whose alias failed is adopted by its tags, and given the alias here.
            "Alias": lambda _: self._point_alias(key["KeyId"]),
        }
        for aspect in (a for a in setters if changes.touches(a)):
            setters[aspect](desired[aspect])
        return observed.outputs

    def delete(self, observed: Observed) -> None:
        kms = self.client("kms")
        if observed.state.get("Alias"):
            kms.delete_alias(AliasName=self.physical)
        kms.schedule_key_deletion(
            KeyId=observed.outputs["id"], PendingWindowInDays=self.ctx.spec.kms.deletion_window_days
        )

    def warnings(self) -> list[str]:
        if not self.ctx.spec.kms.rotation:
            return ["key rotation is off (AWS FSBP KMS.4 expects it on)"]
        return []


def resources(ctx: Context) -> list[Resource]:
    return [KmsKey(ctx)]
