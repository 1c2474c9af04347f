"""The VPC's flow logs: all traffic, to a log group encrypted with the pipeline key (retention
`monitoring.log_retention_days`), delivered with a role limited to that group."""

from __future__ import annotations

import uuid
from typing import Any

from mlpipe.core.context import Context
from mlpipe.core.diff import tags_from_list
from mlpipe.core.errors import MlpipeError
from mlpipe.core.find import forget
from mlpipe.core.resource import Observed, Outputs, Refs, Resource
from mlpipe.resources.iam import role_key
from mlpipe.resources.logs import LogGroup
from mlpipe.resources.network import VPC, Ec2

FLOW_LOG = "ec2:flow-log"
LOG_GROUP = "logs:flow-logs"
ROLE = role_key("flow-logs")


class FlowLog(Ec2):
    """The VPC's flow logs (all traffic) to a log group encrypted with the pipeline key,
    delivered with a role limited to that group. Every property is fixed at creation."""

    resource_type = "vpc-flow-log"
    describe, listed, id_field = "describe_flow_logs", "FlowLogs", "FlowLogId"
    replace_on = ("ResourceId", "TrafficType", "LogGroupName", "DeliverLogsPermissionArn")

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, "flow-log", ctx.names.flow_log_group, (VPC, LOG_GROUP, ROLE))

    def observe(self, found: dict[str, Any]) -> Observed:
        state = {
            "ResourceId": found["ResourceId"],
            "TrafficType": found["TrafficType"],
            "LogGroupName": found.get("LogGroupName"),
            "DeliverLogsPermissionArn": found.get("DeliverLogsPermissionArn"),
            "Tags": tags_from_list(found.get("Tags")),
        }
        return self.observed(state, {"id": found["FlowLogId"]})

    def desired(self, refs: Refs) -> dict[str, Any]:
        return {
            "ResourceId": refs(VPC, "id"),
            "TrafficType": "ALL",
            "LogGroupName": self.ctx.names.flow_log_group,
            "DeliverLogsPermissionArn": refs(ROLE, "arn"),
            "Tags": self.tags,
        }

    def create(self, desired: dict[str, Any]) -> Outputs:
        answer = self.ec2.create_flow_logs(
            ResourceIds=[desired["ResourceId"]],
            ResourceType="VPC",
            TrafficType=desired["TrafficType"],
            LogDestinationType="cloud-watch-logs",
            LogGroupName=desired["LogGroupName"],
            DeliverLogsPermissionArn=desired["DeliverLogsPermissionArn"],
            ClientToken=str(uuid.uuid4()),
            TagSpecifications=self.tag_specs(desired["Tags"]),
        )
        # A refusal is reported per resource, not raised: nothing was created.
        if answer.get("Unsuccessful"):
            error = answer["Unsuccessful"][0]["Error"]
            raise MlpipeError(f"{self.key}: {error['Code']}: {error['Message']}")
        return {"id": answer["FlowLogIds"][0]}

    def delete(self, observed: Observed) -> None:
        forget(self.ec2, "delete_flow_logs", FlowLogIds=[observed.outputs["id"]])


def resources(ctx: Context) -> list[Resource]:
    retention = ctx.spec.monitoring.log_retention_days
    return [LogGroup(ctx, "flow-logs", ctx.names.flow_log_group, retention), FlowLog(ctx)]
