"""CloudWatch Logs groups: retention and encryption with the pipeline's key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlpipe.core.context import Context
from mlpipe.core.find import forget
from mlpipe.core.resource import AspectResource, Observed, Outputs, Refs
from mlpipe.resources.kms import KEY


class LogGroup(AspectResource):
    kind = "logs"
    tagging = "logs"

    def __init__(self, ctx: Context, name: str, physical: str, retention_days: int) -> None:
        super().__init__(ctx, name, physical, depends_on=(KEY,))
        self.retention_days = retention_days

    def group(self) -> str | None:
        """The group's name; None while it cannot exist yet (named after what is not made)."""
        return self.physical

    def _outputs(self, group: str) -> Outputs:
        aws = self.ctx.aws
        arn = f"arn:{aws.partition}:logs:{aws.region}:{aws.account}:log-group:{group}"
        return {"name": group, "arn": arn}

    def read(self) -> Observed | None:
        name = self.group()
        if name is None:
            return None
        groups = self.client("logs").describe_log_groups(logGroupNamePrefix=name)["logGroups"]
        found = next((g for g in groups if g["logGroupName"] == name), None)
        if found is None:
            return None
        outputs = self._outputs(name)
        tags = self.live_tags(outputs["arn"])
        state = {
            "RetentionInDays": found.get("retentionInDays"),
            "KmsKeyId": found.get("kmsKeyId"),
            "Tags": tags,
        }
        return Observed(state, outputs, self.ctx.owns(tags))

    def desired(self, refs: Refs) -> dict[str, Any]:
        return {
            "RetentionInDays": self.retention_days,
            "KmsKeyId": refs(KEY, "arn"),
            "Tags": self.tags,
        }

    def create(self, desired: dict[str, Any]) -> Outputs:
        name = self.group()
        assert name is not None, "a log group is created after what it is named after"
        self.client("logs").create_log_group(
            logGroupName=name, kmsKeyId=desired["KmsKeyId"], tags=desired["Tags"]
        )
        self.aspects()["RetentionInDays"](desired["RetentionInDays"])
        return self._outputs(name)

    def aspects(self) -> dict[str, Callable[[Any], None]]:
        logs = self.client("logs")
        return {
            "RetentionInDays": lambda days: logs.put_retention_policy(
                logGroupName=self.group(), retentionInDays=days
            ),
            "KmsKeyId": lambda key: logs.associate_kms_key(logGroupName=self.group(), kmsKeyId=key),
        }

    def delete(self, observed: Observed) -> None:
        forget(self.client("logs"), "delete_log_group", logGroupName=observed.outputs["name"])
