"""CloudWatch Logs groups: retention and encryption with the pipeline's key."""

from __future__ import annotations

from typing import Any

from mlpipe.core.context import Context
from mlpipe.core.diff import Diff, sync_tags
from mlpipe.core.resource import Observed, Outputs, Refs, Resource
from mlpipe.resources.kms import KEY


class LogGroup(Resource):
    kind = "logs"

    def __init__(self, ctx: Context, name: str, physical: str, retention_days: int) -> None:
        super().__init__(ctx, name, physical, depends_on=(KEY,))
        self.retention_days = retention_days

    @property
    def arn(self) -> str:
        aws = self.ctx.aws
        return f"arn:{aws.partition}:logs:{aws.region}:{aws.account}:log-group:{self.physical}"

    def read(self) -> Observed | None:
        logs = self.client("logs")
        groups = logs.describe_log_groups(logGroupNamePrefix=self.physical)["logGroups"]
        group = next((g for g in groups if g["logGroupName"] == self.physical), None)
        if group is None:
            return None
        tags = logs.list_tags_for_resource(resourceArn=self.arn).get("tags", {})
        state = {
            "RetentionInDays": group.get("retentionInDays"),
            "KmsKeyId": group.get("kmsKeyId"),
            "Tags": tags,
        }
        return Observed(state, {"name": self.physical, "arn": self.arn}, self.ctx.owns(tags))

    def desired(self, refs: Refs) -> dict[str, Any]:
        return {
            "RetentionInDays": self.retention_days,
            "KmsKeyId": refs(KEY, "arn"),
            "Tags": self.tags,
        }

    def create(self, desired: dict[str, Any]) -> Outputs:
        logs = self.client("logs")
        logs.create_log_group(
            logGroupName=self.physical, kmsKeyId=desired["KmsKeyId"], tags=desired["Tags"]
        )
        logs.put_retention_policy(
            logGroupName=self.physical, retentionInDays=desired["RetentionInDays"]
        )
        return {"name": self.physical, "arn": self.arn}

    def update(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> Outputs:
        logs = self.client("logs")
        if changes.touches("RetentionInDays"):
            logs.put_retention_policy(
                logGroupName=self.physical, retentionInDays=desired["RetentionInDays"]
            )
        if changes.touches("KmsKeyId"):
            logs.associate_kms_key(logGroupName=self.physical, kmsKeyId=desired["KmsKeyId"])
        if changes.touches("Tags"):
            sync_tags(
                observed.state["Tags"],
                desired["Tags"],
                lambda t: logs.tag_resource(resourceArn=self.arn, tags=t),
                lambda keys: logs.untag_resource(resourceArn=self.arn, tagKeys=keys),
            )
        return observed.outputs

    def delete(self, observed: Observed) -> None:
        self.client("logs").delete_log_group(logGroupName=self.physical)
