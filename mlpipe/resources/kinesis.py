"""The inference stream, the queue that keeps failed records, and the stream-processor's event
source mapping between them.

Poison records are kept, not lost: the mapping bisects a failing batch, retries it, and once
the retries are spent sends the failed records' locations (shard, sequence numbers) to the
failure queue; the records stay readable in the stream for its retention period.
"""

from __future__ import annotations

import json
from typing import Any

from mlpipe.core.context import Context
from mlpipe.core.diff import Diff, policy, sync_tags, tags_from_list
from mlpipe.core.errors import is_not_found
from mlpipe.core.resource import Observed, Outputs, Refs, Resource
from mlpipe.naming import Arns
from mlpipe.resources.kms import KEY
from mlpipe.resources.lambdas import (
    STREAM_PROCESSOR,
    function_arn,
    function_key,
)

STREAM = "kinesis:stream"
QUEUE = "sqs:stream-failures"
MAPPING = "lambda:stream-mapping"

QUEUE_RETENTION_SECONDS = 14 * 24 * 3600  # SQS's maximum
QUEUE_MISSING = ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")
ENABLED_STATES = ("Creating", "Enabling", "Enabled", "Updating")


class Stream(Resource):
    kind = "kinesis"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, "stream", ctx.names.stream, depends_on=(KEY,))

    def read(self) -> Observed | None:
        kinesis = self.client("kinesis")
        try:
            summary = kinesis.describe_stream_summary(StreamName=self.physical)[
                "StreamDescriptionSummary"
            ]
        except Exception as exc:
            if is_not_found(exc):
                return None
            raise
        if summary["StreamStatus"] == "DELETING":
            return None
        arn = summary["StreamARN"]
        tags = tags_from_list(kinesis.list_tags_for_stream(StreamName=self.physical).get("Tags"))
        state = {
            "StreamModeDetails": {
                "StreamMode": (summary.get("StreamModeDetails") or {}).get(
                    "StreamMode", "PROVISIONED"
                )
            },
            "ShardCount": summary.get("OpenShardCount"),
            "RetentionPeriodHours": summary.get("RetentionPeriodHours"),
            "Encryption": {
                "EncryptionType": summary.get("EncryptionType", "NONE"),
                "KeyId": summary.get("KeyId"),
            },
            "Tags": tags,
        }
        return Observed(state, {"name": self.physical, "arn": arn}, self.ctx.owns(tags))

    def desired(self, refs: Refs) -> dict[str, Any]:
        spec = self.ctx.spec.stream
        return {
            "StreamModeDetails": {"StreamMode": "PROVISIONED"},
            "ShardCount": spec.shards,
            "RetentionPeriodHours": spec.retention_hours,
            "Encryption": {"EncryptionType": "KMS", "KeyId": refs(KEY, "arn")},
            "Tags": self.tags,
        }

    def _wait_active(self) -> None:
        self.client("kinesis").get_waiter("stream_exists").wait(
            StreamName=self.physical, WaiterConfig={"Delay": 2, "MaxAttempts": 300}
        )

    def create(self, desired: dict[str, Any]) -> Outputs:
        kinesis = self.client("kinesis")
        kinesis.create_stream(
            StreamName=self.physical,
            ShardCount=desired["ShardCount"],
            StreamModeDetails=desired["StreamModeDetails"],
            Tags=desired["Tags"],
        )
        self._wait_active()
        self._encrypt(desired["Encryption"])
        if desired["RetentionPeriodHours"] != 24:  # a new stream keeps records 24 hours
            self._retain(24, desired["RetentionPeriodHours"])
        return {"name": self.physical, "arn": Arns(self.ctx).stream}

    def _encrypt(self, encryption: dict[str, Any]) -> None:
        self.client("kinesis").start_stream_encryption(
            StreamName=self.physical, EncryptionType="KMS", KeyId=encryption["KeyId"]
        )
        self._wait_active()

    def _retain(self, current: int, hours: int) -> None:
        kinesis = self.client("kinesis")
        if hours > current:
            kinesis.increase_stream_retention_period(
                StreamName=self.physical, RetentionPeriodHours=hours
            )
        else:
            kinesis.decrease_stream_retention_period(
                StreamName=self.physical, RetentionPeriodHours=hours
            )
        self._wait_active()

    def update(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> Outputs:
        kinesis, state = self.client("kinesis"), observed.state
        if changes.touches("StreamModeDetails"):
            kinesis.update_stream_mode(
                StreamARN=observed.outputs["arn"], StreamModeDetails=desired["StreamModeDetails"]
            )
            self._wait_active()
        if changes.touches("ShardCount"):
            kinesis.update_shard_count(
                StreamName=self.physical,
                TargetShardCount=desired["ShardCount"],
                ScalingType="UNIFORM_SCALING",
            )
            self._wait_active()
        if changes.touches("RetentionPeriodHours"):
            self._retain(state["RetentionPeriodHours"], desired["RetentionPeriodHours"])
        if changes.touches("Encryption"):
            self._encrypt(desired["Encryption"])
        if changes.touches("Tags"):
            sync_tags(
                state["Tags"],
                desired["Tags"],
                lambda tags: kinesis.add_tags_to_stream(StreamName=self.physical, Tags=tags),
                lambda keys: kinesis.remove_tags_from_stream(
                    StreamName=self.physical, TagKeys=keys
                ),
            )
        return observed.outputs

    def delete(self, observed: Observed) -> None:
        try:
            self.client("kinesis").delete_stream(
                StreamName=self.physical, EnforceConsumerDeletion=True
            )
        except Exception as exc:
            if not is_not_found(exc):
                raise


class FailureQueue(Resource):
    kind = "sqs"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, "stream-failures", ctx.names.stream_dlq, depends_on=(KEY,))

    def _url(self) -> str | None:
        try:
            return str(self.client("sqs").get_queue_url(QueueName=self.physical)["QueueUrl"])
        except Exception as exc:
            if is_not_found(exc, *QUEUE_MISSING):
                return None
            raise

    def read(self) -> Observed | None:
        url = self._url()
        if url is None:
            return None
        sqs = self.client("sqs")
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        tags = sqs.list_queue_tags(QueueUrl=url).get("Tags") or {}
        state = {
            "KmsMasterKeyId": attributes.get("KmsMasterKeyId"),
            "MessageRetentionPeriod": attributes.get("MessageRetentionPeriod"),
            "Policy": policy(attributes.get("Policy")),
            "Tags": tags,
        }
        outputs = {"name": self.physical, "url": url, "arn": attributes["QueueArn"]}
        return Observed(state, outputs, self.ctx.owns(tags))

    def desired(self, refs: Refs) -> dict[str, Any]:
        arn = Arns(self.ctx).stream_dlq
        tls_only = {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "sqs:*",
            "Resource": arn,
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
        return {
            "KmsMasterKeyId": refs(KEY, "arn"),
            "MessageRetentionPeriod": str(QUEUE_RETENTION_SECONDS),
            "Policy": policy({"Statement": [tls_only]}),
            "Tags": self.tags,
        }

    @staticmethod
    def _attributes(desired: dict[str, Any], keys: list[str]) -> dict[str, str]:
        return {key: json.dumps(desired[key]) if key == "Policy" else desired[key] for key in keys}

    def create(self, desired: dict[str, Any]) -> Outputs:
        sqs = self.client("sqs")
        attributes = self._attributes(
            desired, ["KmsMasterKeyId", "MessageRetentionPeriod", "Policy"]
        )
        # A queue deleted in the last 60 seconds cannot be created again yet.
        url = self.ctx.eventually(
            lambda: sqs.create_queue(
                QueueName=self.physical, Attributes=attributes, tags=desired["Tags"]
            )["QueueUrl"],
            "sqs-queue-deleted-recently",
            "sqs-queue-deleted-recently-json",
        )
        return {"name": self.physical, "url": url, "arn": Arns(self.ctx).stream_dlq}

    def update(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> Outputs:
        sqs, url = self.client("sqs"), observed.outputs["url"]
        keys = [
            key
            for key in ("KmsMasterKeyId", "MessageRetentionPeriod", "Policy")
            if changes.touches(key)
        ]
        if keys:
            sqs.set_queue_attributes(QueueUrl=url, Attributes=self._attributes(desired, keys))
        if changes.touches("Tags"):
            sync_tags(
                observed.state["Tags"],
                desired["Tags"],
                lambda tags: sqs.tag_queue(QueueUrl=url, Tags=tags),
                lambda keys: sqs.untag_queue(QueueUrl=url, TagKeys=keys),
            )
        return observed.outputs

    def delete(self, observed: Observed) -> None:
        try:
            self.client("sqs").delete_queue(QueueUrl=observed.outputs["url"])
        except Exception as exc:
            if not is_not_found(exc, *QUEUE_MISSING):
                raise


class StreamMapping(Resource):
    """The stream-processor's Kinesis event source mapping (ReportBatchItemFailures)."""

    kind = "lambda"
    replace_on = ("EventSourceArn", "StartingPosition")
    SETTINGS = (
        "BatchSize",
        "MaximumBatchingWindowInSeconds",
        "BisectBatchOnFunctionError",
        "MaximumRetryAttempts",
        "FunctionResponseTypes",
        "DestinationConfig",
        "Enabled",
    )

    def __init__(self, ctx: Context) -> None:
        super().__init__(
            ctx,
            "stream-mapping",
            f"{ctx.names.stream} -> {ctx.names.function(STREAM_PROCESSOR)}",
            depends_on=(STREAM, QUEUE, function_key(STREAM_PROCESSOR)),
        )

    def _find(self) -> dict[str, Any] | None:
        """The mapping from this stream to this function. Filtered by ARN: a function-name
        filter misses mappings created with the function's ARN on some implementations."""
        lam = self.client("lambda")
        stream, function = Arns(self.ctx).stream, function_arn(self.ctx, STREAM_PROCESSOR)
        for page in lam.get_paginator("list_event_source_mappings").paginate(EventSourceArn=stream):
            for mapping in page["EventSourceMappings"]:
                if mapping.get("FunctionArn") == function and mapping.get("State") != "Deleting":
                    return dict(mapping)
        return None

    def read(self) -> Observed | None:
        mapping = self._find()
        if mapping is None:
            return None
        arn = mapping.get("EventSourceMappingArn")
        tags = self.client("lambda").list_tags(Resource=arn).get("Tags", {}) if arn else {}
        failure = ((mapping.get("DestinationConfig") or {}).get("OnFailure") or {}).get(
            "Destination"
        )
        state = {
            "EventSourceArn": mapping["EventSourceArn"],
            "FunctionArn": mapping["FunctionArn"],
            "StartingPosition": mapping.get("StartingPosition"),
            "BatchSize": mapping.get("BatchSize"),
            "MaximumBatchingWindowInSeconds": mapping.get("MaximumBatchingWindowInSeconds", 0),
            "BisectBatchOnFunctionError": mapping.get("BisectBatchOnFunctionError", False),
            "MaximumRetryAttempts": mapping.get("MaximumRetryAttempts", -1),
            "FunctionResponseTypes": sorted(mapping.get("FunctionResponseTypes") or []),
            "DestinationConfig": {"OnFailure": {"Destination": failure}},
            "Enabled": mapping.get("State") in ENABLED_STATES,
            "Tags": tags,
        }
        outputs = {"uuid": mapping["UUID"], "arn": arn}
        return Observed(state, outputs, self.ctx.owns(tags))

    def desired(self, refs: Refs) -> dict[str, Any]:
        spec = self.ctx.spec.stream
        return {
            "EventSourceArn": refs(STREAM, "arn"),
            "FunctionArn": refs(function_key(STREAM_PROCESSOR), "arn"),
            "StartingPosition": spec.starting_position,
            "BatchSize": spec.batch_size,
            "MaximumBatchingWindowInSeconds": spec.batching_window_seconds,
            "BisectBatchOnFunctionError": spec.bisect_on_error,
            "MaximumRetryAttempts": spec.retry_attempts,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "DestinationConfig": {"OnFailure": {"Destination": refs(QUEUE, "arn")}},
            "Enabled": True,
            "Tags": self.tags,
        }

    def create(self, desired: dict[str, Any]) -> Outputs:
        lam = self.client("lambda")
        settings = {key: desired[key] for key in self.SETTINGS}
        # The function's role may not yet be usable to read the stream or send to the queue.
        mapping = self.ctx.eventually(
            lambda: lam.create_event_source_mapping(
                EventSourceArn=desired["EventSourceArn"],
                FunctionName=desired["FunctionArn"],
                StartingPosition=desired["StartingPosition"],
                Tags=desired["Tags"],
                **settings,
            ),
            "lambda-mapping-role-not-ready",
        )
        return {"uuid": mapping["UUID"], "arn": mapping.get("EventSourceMappingArn")}

    def update(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> Outputs:
        lam = self.client("lambda")
        changed = {key: desired[key] for key in self.SETTINGS if changes.touches(key)}
        if changes.touches("FunctionArn"):
            changed["FunctionName"] = desired["FunctionArn"]
        if changed:
            # A mapping that is still being created or updated refuses changes for a while.
            self.ctx.eventually(
                lambda: lam.update_event_source_mapping(UUID=observed.outputs["uuid"], **changed),
                "lambda-mapping-in-use",
            )
        if changes.touches("Tags"):
            arn = observed.outputs["arn"]
            sync_tags(
                observed.state["Tags"],
                desired["Tags"],
                lambda tags: lam.tag_resource(Resource=arn, Tags=tags),
                lambda keys: lam.untag_resource(Resource=arn, TagKeys=keys),
            )
        return observed.outputs

    def delete(self, observed: Observed) -> None:
        try:
            self.ctx.eventually(
                lambda: self.client("lambda").delete_event_source_mapping(
                    UUID=observed.outputs["uuid"]
                ),
                "lambda-mapping-in-use",
            )
        except Exception as exc:
            if not is_not_found(exc):
                raise


def resources(ctx: Context) -> list[Resource]:
    return [Stream(ctx), FailureQueue(ctx), StreamMapping(ctx)]
