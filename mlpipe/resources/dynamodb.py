"""The predictions table: on-demand, TTL, PITR, CMK encryption, stream, ModelVersionIndex."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlpipe.core.context import Context
from mlpipe.core.diff import Diff, tags_to_list
from mlpipe.core.resource import AspectResource, Observed, Outputs, Refs, Resource
from mlpipe.core.wait import wait_for
from mlpipe.resources.kms import KEY

TABLE = "dynamodb:predictions"
STREAM_VIEW = "NEW_AND_OLD_IMAGES"
# Each change (a table update, an index made or dropped) is waited for while the table is
# CHANGING (DescribeTable's TableStatus); AWS takes minutes for an index on a large table.
CHANGING = ("CREATING", "UPDATING")
WAIT_SECONDS = 600


# The attributes the table's and the index's keys are made of, with their types.
ATTRIBUTES = {"predictionId": "S", "timestamp": "N", "modelVersion": "S"}


def _attributes(*names: str) -> list[dict[str, str]]:
    return [{"AttributeName": name, "AttributeType": ATTRIBUTES[name]} for name in names]


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


def _indexes(table: dict[str, Any]) -> list[dict[str, Any]]:
    """The table's global secondary indexes in desired's shape."""
    found = (
        {
            "IndexName": i["IndexName"],
            "KeySchema": i["KeySchema"],
            "Projection": {"ProjectionType": i["Projection"]["ProjectionType"]},
        }
        for i in table.get("GlobalSecondaryIndexes", [])
    )
    return sorted(found, key=lambda i: i["IndexName"])


def _sse(sse: dict[str, Any]) -> dict[str, Any]:
    return {"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": sse["KMSMasterKeyArn"]}


class Table(AspectResource):
    kind = "dynamodb"
    tagging = "dynamodb"
    replace_on = ("KeySchema",)

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, "predictions", ctx.names.predictions_table, depends_on=(KEY,))
        # Deletion protection says keep it: destroy leaves it, as the model bucket (--force
        # deletes).
        self.retain = ctx.spec.storage.predictions_table.deletion_protection

    def _table(self) -> tuple[dict[str, Any], str]:
        """The table's description and status ("gone": no table)."""
        found = self.find("dynamodb", "describe_table", TableName=self.physical)
        table = found["Table"] if found else {}
        return table, table.get("TableStatus", "gone")

    def read(self) -> Observed | None:
        ddb, (table, status) = self.client("dynamodb"), self._table()
        if status in ("gone", "DELETING"):
            return None
        ttl = ddb.describe_time_to_live(TableName=self.physical)["TimeToLiveDescription"]
        backups = ddb.describe_continuous_backups(TableName=self.physical)
        pitr = backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]
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
            "Indexes": _indexes(table),
            "TTL": {
                "AttributeName": ttl.get("AttributeName"),
                "Enabled": ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"),
            },
            "PointInTimeRecovery": pitr["PointInTimeRecoveryStatus"] == "ENABLED",
            "DeletionProtection": table.get("DeletionProtectionEnabled", False),
            "Tags": self.live_tags(table["TableArn"]),
        }
        return Observed(state, self._outputs(table), self.ctx.owns(state["Tags"]))

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

    def _outputs(self, table: dict[str, Any]) -> Outputs:
        return {
            "name": self.physical,
            "arn": table["TableArn"],
            "stream_arn": table.get("LatestStreamArn"),
        }

    def create(self, desired: dict[str, Any]) -> Outputs:
        self.client("dynamodb").create_table(
            TableName=self.physical,
            AttributeDefinitions=_attributes(*ATTRIBUTES),
            KeySchema=desired["KeySchema"],
            BillingMode=desired["BillingMode"],
            GlobalSecondaryIndexes=desired["Indexes"],
            StreamSpecification=desired["Stream"],
            SSESpecification=_sse(desired["SSE"]),
            DeletionProtectionEnabled=desired["DeletionProtection"],
            Tags=tags_to_list(desired["Tags"]),
        )
        table = self._active()
        setters = self.aspects()
        for aspect in ("TTL", "PointInTimeRecovery"):  # not settable at creation
            setters[aspect](desired[aspect])
        return self._outputs(table)

    def _update_table(self, **params: Any) -> None:
        self.client("dynamodb").update_table(TableName=self.physical, **params)
        self._active()

    def _active(self) -> dict[str, Any]:
        """The table, once no change is in progress: it takes one at a time."""
        table: dict[str, Any] = wait_for(
            self._table,
            pending=CHANGING,
            target=("ACTIVE",),
            timeout=WAIT_SECONDS,
            clock=self.ctx.clock,
            what=f"table {self.physical}",
        )
        return table

    def aspects(self) -> dict[str, Callable[[Any], None]]:
        ddb, name = self.client("dynamodb"), {"TableName": self.physical}
        return {
            "BillingMode": lambda v: self._update_table(BillingMode=v),
            "SSE": lambda v: self._update_table(SSESpecification=_sse(v)),
            "DeletionProtection": lambda v: self._update_table(DeletionProtectionEnabled=v),
            "Stream": self._set_stream,
            "Indexes": self._set_indexes,
            "TTL": lambda v: ddb.update_time_to_live(**name, TimeToLiveSpecification=v),
            "PointInTimeRecovery": lambda v: self.ctx.eventually(
                lambda: ddb.update_continuous_backups(
                    **name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": v}
                ),
                "dynamodb-backups-unavailable",
            ),
        }

    def update(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> Outputs:
        self.apply_aspects(desired, changes)
        # A new stream has a new ARN.
        return self._outputs(self._active()) if changes.touches("Stream") else observed.outputs

    def _set_stream(self, stream: dict[str, Any]) -> None:
        live = self._active().get("StreamSpecification") or {}
        if live.get("StreamEnabled"):
            # A stream's view type cannot change in place: turn it off, then on again.
            self._update_table(StreamSpecification={"StreamEnabled": False})
        self._update_table(StreamSpecification=stream)

    def _set_indexes(self, desired: list[dict[str, Any]]) -> None:
        """One index change per UpdateTable call, as DynamoDB requires."""
        live = {i["IndexName"]: i for i in _indexes(self._active())}
        wanted = {i["IndexName"]: i for i in desired}
        for name, index in live.items():
            if wanted.get(name) != index:
                self._update_table(GlobalSecondaryIndexUpdates=[{"Delete": {"IndexName": name}}])
        for name, index in wanted.items():
            if live.get(name) != index:
                self._update_table(
                    AttributeDefinitions=_attributes("modelVersion", "timestamp"),
                    GlobalSecondaryIndexUpdates=[{"Create": index}],
                )

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
    return [Table(ctx)]
