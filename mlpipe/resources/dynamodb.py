"""The predictions table: on-demand, TTL, PITR, CMK encryption, stream, ModelVersionIndex."""

from __future__ import annotations

from typing import Any

from mlpipe.core.context import Context
from mlpipe.core.diff import Diff, sync_tags, tags_from_list, tags_to_list
from mlpipe.core.errors import is_not_found
from mlpipe.core.resource import Observed, Outputs, Refs, Resource
from mlpipe.resources.kms import KEY

TABLE = "dynamodb:predictions"
STREAM_VIEW = "NEW_AND_OLD_IMAGES"


def _keys(hash_key: str, range_key: str) -> list[dict[str, str]]:
    return [
        {"AttributeName": hash_key, "KeyType": "HASH"},
        {"AttributeName": range_key, "KeyType": "RANGE"},
    ]


INDEXES = [
    {
        "IndexName": "ModelVersionIndex",
        "KeySchema": _keys("modelVersion", "timestamp"),
        "Projection": {"ProjectionType": "ALL"},
    }
]


class Table(Resource):
    kind = "dynamodb"
    replace_on = ("KeySchema",)

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, "predictions", ctx.names.predictions_table, depends_on=(KEY,))
        self.retain = False

    def read(self) -> Observed | None:
        ddb = self.client("dynamodb")
        try:
            table = ddb.describe_table(TableName=self.physical)["Table"]
        except Exception as exc:
            if is_not_found(exc):
                return None
            raise
        if table["TableStatus"] == "DELETING":
            return None
        arn = table["TableArn"]
        ttl = ddb.describe_time_to_live(TableName=self.physical)["TimeToLiveDescription"]
        backups = ddb.describe_continuous_backups(TableName=self.physical)
        pitr = backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]
        tags = tags_from_list(ddb.list_tags_of_resource(ResourceArn=arn).get("Tags"))
        sse = table.get("SSEDescription") or {}
        stream = table.get("StreamSpecification") or {"StreamEnabled": False}
        state = {
            "KeySchema": table["KeySchema"],
            "BillingMode": (table.get("BillingModeSummary") or {}).get(
                "BillingMode", "PROVISIONED"
            ),
            "SSE": {"SSEType": sse.get("SSEType"), "KMSMasterKeyArn": sse.get("KMSMasterKeyArn")},
            "Stream": {
                "StreamEnabled": stream.get("StreamEnabled", False),
                "StreamViewType": stream.get("StreamViewType"),
            },
            "Indexes": sorted(
                (
                    {
                        "IndexName": i["IndexName"],
                        "KeySchema": i["KeySchema"],
                        "Projection": {"ProjectionType": i["Projection"]["ProjectionType"]},
                    }
                    for i in table.get("GlobalSecondaryIndexes", [])
                ),
                key=lambda i: i["IndexName"],
            ),
            "TTL": {
                "AttributeName": ttl.get("AttributeName"),
                "Enabled": ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"),
            },
            "PointInTimeRecovery": pitr["PointInTimeRecoveryStatus"] == "ENABLED",
            "DeletionProtection": table.get("DeletionProtectionEnabled", False),
            "Tags": tags,
        }
        outputs = {"name": self.physical, "arn": arn, "stream_arn": table.get("LatestStreamArn")}
        return Observed(state, outputs, self.ctx.owns(tags))

    def desired(self, refs: Refs) -> dict[str, Any]:
        spec = self.ctx.spec.storage.predictions_table
        return {
            "KeySchema": _keys("predictionId", "timestamp"),
            "BillingMode": "PAY_PER_REQUEST",
            "SSE": {"SSEType": "KMS", "KMSMasterKeyArn": refs(KEY, "arn")},
            "Stream": {"StreamEnabled": True, "StreamViewType": STREAM_VIEW},
            "Indexes": INDEXES,
            "TTL": {"AttributeName": spec.ttl_attribute, "Enabled": True},
            "PointInTimeRecovery": spec.point_in_time_recovery,
            "DeletionProtection": spec.deletion_protection,
            "Tags": self.tags,
        }

    def _wait_active(self) -> None:
        self.client("dynamodb").get_waiter("table_exists").wait(
            TableName=self.physical, WaiterConfig={"Delay": 2, "MaxAttempts": 300}
        )

    def create(self, desired: dict[str, Any]) -> Outputs:
        ddb = self.client("dynamodb")
        table = ddb.create_table(
            TableName=self.physical,
            KeySchema=desired["KeySchema"],
            AttributeDefinitions=[
                {"AttributeName": "predictionId", "AttributeType": "S"},
                {"AttributeName": "timestamp", "AttributeType": "N"},
                {"AttributeName": "modelVersion", "AttributeType": "S"},
            ],
            BillingMode=desired["BillingMode"],
            GlobalSecondaryIndexes=desired["Indexes"],
            StreamSpecification=desired["Stream"],
            SSESpecification={
                "Enabled": True,
                "SSEType": "KMS",
                "KMSMasterKeyId": desired["SSE"]["KMSMasterKeyArn"],
            },
            DeletionProtectionEnabled=desired["DeletionProtection"],
            Tags=tags_to_list(desired["Tags"]),
        )["TableDescription"]
        self._wait_active()
        self._set_ttl(desired["TTL"])
        self._set_pitr(desired["PointInTimeRecovery"])
        return {
            "name": self.physical,
            "arn": table["TableArn"],
            "stream_arn": table.get("LatestStreamArn"),
        }

    def _set_ttl(self, ttl: dict[str, Any]) -> None:
        self.client("dynamodb").update_time_to_live(
            TableName=self.physical, TimeToLiveSpecification=ttl
        )

    def _set_pitr(self, enabled: bool) -> None:
        ddb = self.client("dynamodb")
        self.ctx.eventually(
            lambda: ddb.update_continuous_backups(
                TableName=self.physical,
                PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": enabled},
            ),
            "dynamodb-backups-unavailable",
        )

    def update(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> Outputs:
        ddb, name = self.client("dynamodb"), self.physical
        params: dict[str, Any] = {}
        if changes.touches("BillingMode"):
            params["BillingMode"] = desired["BillingMode"]
        if changes.touches("SSE"):
            params["SSESpecification"] = {
                "Enabled": True,
                "SSEType": "KMS",
                "KMSMasterKeyId": desired["SSE"]["KMSMasterKeyArn"],
            }
        if changes.touches("DeletionProtection"):
            params["DeletionProtectionEnabled"] = desired["DeletionProtection"]
        if changes.touches("Stream") and observed.state["Stream"]["StreamEnabled"]:
            # A stream's view type cannot change in place: turn it off, then on again.
            ddb.update_table(TableName=name, StreamSpecification={"StreamEnabled": False})
            self._wait_active()
        if changes.touches("Stream"):
            params["StreamSpecification"] = desired["Stream"]
        if params:
            ddb.update_table(TableName=name, **params)
            self._wait_active()
        if changes.touches("Indexes"):
            self._sync_indexes(observed.state["Indexes"], desired["Indexes"])
        if changes.touches("TTL"):
            self._set_ttl(desired["TTL"])
        if changes.touches("PointInTimeRecovery"):
            self._set_pitr(desired["PointInTimeRecovery"])
        if changes.touches("Tags"):
            arn = observed.outputs["arn"]
            sync_tags(
                observed.state["Tags"],
                desired["Tags"],
                lambda t: ddb.tag_resource(ResourceArn=arn, Tags=tags_to_list(t)),
                lambda keys: ddb.untag_resource(ResourceArn=arn, TagKeys=keys),
            )
        return self.read().outputs if changes.touches("Stream") else observed.outputs  # type: ignore[union-attr]

    def _sync_indexes(self, current: list[dict[str, Any]], desired: list[dict[str, Any]]) -> None:
        """One index change per UpdateTable call, as DynamoDB requires."""
        ddb = self.client("dynamodb")
        live = {i["IndexName"]: i for i in current}
        wanted = {i["IndexName"]: i for i in desired}
        for name, index in live.items():
            if wanted.get(name) != index:
                ddb.update_table(
                    TableName=self.physical,
                    GlobalSecondaryIndexUpdates=[{"Delete": {"IndexName": name}}],
                )
                self._wait_active()
        for name, index in wanted.items():
            if live.get(name) != index:
                ddb.update_table(
                    TableName=self.physical,
                    AttributeDefinitions=[
                        {"AttributeName": "modelVersion", "AttributeType": "S"},
                        {"AttributeName": "timestamp", "AttributeType": "N"},
                    ],
                    GlobalSecondaryIndexUpdates=[{"Create": index}],
                )
                self._wait_active()

    def delete(self, observed: Observed) -> None:
        ddb = self.client("dynamodb")
        if observed.state.get("DeletionProtection"):
            ddb.update_table(TableName=self.physical, DeletionProtectionEnabled=False)
        ddb.delete_table(TableName=self.physical)

    def warnings(self) -> list[str]:
        spec = self.ctx.spec.storage.predictions_table
        notes = []
        if not spec.point_in_time_recovery:
            notes.append("point-in-time recovery is off (AWS FSBP DynamoDB.2 expects it on)")
        if not spec.deletion_protection:
            notes.append("deletion protection is off (AWS FSBP DynamoDB.6 expects it on)")
        return notes


def resources(ctx: Context) -> list[Resource]:
    table = Table(ctx)
    # Deletion protection says keep it: destroy leaves it, as the model bucket (--force deletes).
    table.retain = ctx.spec.storage.predictions_table.deletion_protection
    return [table]
