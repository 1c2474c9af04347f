"""The inference stream, the queue that keeps failed records, and the stream-processor's event
source mapping between them.

Poison records are kept, not lost: the mapping bisects a failing batch, retries it, and once
the retries are spent sends the failed records' locations (shard, sequence numbers) to the
failure queue; the records stay readable in the stream for its retention period.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from mlpipe.core.context import Context
from mlpipe.core.diff import Diff, policy
from mlpipe.core.find import forget
from mlpipe.core.resource import AspectResource, Observed, Outputs, Refs, Resource
from mlpipe.core.wait import wait_for
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
# Each stream change is waited for: resharding takes minutes per shard on AWS.
WAIT_SECONDS = 600
ENABLED_STATES = ("Creating", "Enabling", "Enabled", "Updating")


class Stream(AspectResource):
    kind = "kinesis"
    tagging = "kinesis"
    tag_id = "name"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, "stream", ctx.names.stream, depends_on=(KEY,))

    def _summary(self) -> tuple[dict[str, Any], str]:
        """The stream's summary and status ("gone": no stream)."""
        found = self.find("kinesis", "describe_stream_summary", StreamName=self.physical)
        summary = found["StreamDescriptionSummary"] if found else {}
        return summary, summary.get("StreamStatus", "gone")

    def read(self) -> Observed | None:
        summary, status = self._summary()
        if status in ("gone", "DELETING"):
            return None
        mode = (summary.get("StreamModeDetails") or {}).get("StreamMode", "PROVISIONED")
        state = {
            "StreamModeDetails": {"StreamMode": mode},
            "ShardCount": summary.get("OpenShardCount"),
            "RetentionPeriodHours": summary.get("RetentionPeriodHours"),
            "Encryption": {
                "EncryptionType": summary.get("EncryptionType", "NONE"),
                "KeyId": summary.get("KeyId"),
            },
            "Tags": self.live_tags(self.physical),
        }
        outputs = {"name": self.physical, "arn": summary["StreamARN"]}
        return Observed(state, outputs, self.ctx.owns(state["Tags"]))

    def desired(self, refs: Refs) -> dict[str, Any]:
        spec = self.ctx.spec.stream
        return {
            "StreamModeDetails": {"StreamMode": "PROVISIONED"},
            "ShardCount": spec.shards,
            "RetentionPeriodHours": spec.retention_hours,
            "Encryption": {"EncryptionType": "KMS", "KeyId": refs(KEY, "arn")},
            "Tags": self.tags,
        }

    def _active(self) -> dict[str, Any]:
        """The stream's summary, once no change is in progress (a reshard takes minutes)."""
        summary: dict[str, Any] = wait_for(
            self._summary,
            pending=("CREATING", "UPDATING"),
            target=("ACTIVE",),
            timeout=WAIT_SECONDS,
            clock=self.ctx.clock,
            what=f"stream {self.physical}",
            progress=lambda why, _elapsed: self.ctx.progress(self.key, f"waiting: {why}"),
        )
        return summary

    def create(self, desired: dict[str, Any]) -> Outputs:
        made = ("ShardCount", "StreamModeDetails", "Tags")  # the rest is set once it is active
        self.client("kinesis").create_stream(
            StreamName=self.physical, **{key: desired[key] for key in made}
        )
        self._active()
        setters = self.aspects()
        setters["Encryption"](desired["Encryption"])
        if desired["RetentionPeriodHours"] != 24:  # a new stream keeps records 24 hours
            setters["RetentionPeriodHours"](desired["RetentionPeriodHours"])
        return {"name": self.physical, "arn": Arns(self.ctx).stream}

    def aspects(self) -> dict[str, Callable[[Any], None]]:
        kinesis, stream = self.client("kinesis"), {"StreamName": self.physical}

        def then_wait(call: Callable[..., Any], **params: Any) -> None:
            call(**params)
            self._active()

        def retain(hours: int) -> None:
            longer = hours > self._active()["RetentionPeriodHours"]
            increase, decrease = (
                kinesis.increase_stream_retention_period,
                kinesis.decrease_stream_retention_period,
            )
            then_wait(increase if longer else decrease, **stream, RetentionPeriodHours=hours)

        return {
            "StreamModeDetails": lambda v: then_wait(
                kinesis.update_stream_mode, StreamARN=Arns(self.ctx).stream, StreamModeDetails=v
            ),
            "ShardCount": lambda v: then_wait(
                kinesis.update_shard_count,
                **stream,
                TargetShardCount=v,
                ScalingType="UNIFORM_SCALING",
            ),
            "RetentionPeriodHours": retain,
            "Encryption": lambda v: then_wait(
                kinesis.start_stream_encryption, **stream, EncryptionType="KMS", KeyId=v["KeyId"]
            ),
        }

    def delete(self, observed: Observed) -> None:
        forget(
            self.client("kinesis"),
            "delete_stream",
            StreamName=self.physical,
            EnforceConsumerDeletion=True,
        )


class FailureQueue(Resource):
    """Where the mapping sends the locations of the records it could not process."""

    kind = "sqs"
    tagging = "sqs"
    tag_id = "url"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, "stream-failures", ctx.names.stream_dlq, depends_on=(KEY,))

    def read(self) -> Observed | None:
        found = self.find("sqs", "get_queue_url", QueueName=self.physical)
        if found is None:
            return None
        url = found["QueueUrl"]
        answer = self.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
        attributes = answer["Attributes"]
        state = {
            "KmsMasterKeyId": attributes.get("KmsMasterKeyId"),
            "MessageRetentionPeriod": attributes.get("MessageRetentionPeriod"),
            "Policy": policy(attributes.get("Policy")),
            "Tags": self.live_tags(url),
        }
        outputs = {"name": self.physical, "url": url, "arn": attributes["QueueArn"]}
        return Observed(state, outputs, self.ctx.owns(state["Tags"]))

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
        keys = [
            k for k in ("KmsMasterKeyId", "MessageRetentionPeriod", "Policy") if changes.touches(k)
        ]
        attributes = self._attributes(desired, keys)
        self.client("sqs").set_queue_attributes(
            QueueUrl=observed.outputs["url"], Attributes=attributes
        )
        return observed.outputs

    def delete(self, observed: Observed) -> None:
        forget(self.client("sqs"), "delete_queue", QueueUrl=observed.outputs["url"])


class StreamMapping(Resource):
    """The stream-processor's Kinesis event source mapping (ReportBatchItemFailures)."""

    kind = "lambda"
    tagging = "lambda"
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
        tags = self.live_tags(arn) if arn else {}
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
        return observed.outputs

    def delete(self, observed: Observed) -> None:
        lam, mapping = self.client("lambda"), {"UUID": observed.outputs["uuid"]}
        self.ctx.eventually(
            lambda: forget(lam, "delete_event_source_mapping", **mapping), "lambda-mapping-in-use"
        )


def resources(ctx: Context) -> list[Resource]:
    return [Stream(ctx), FailureQueue(ctx), StreamMapping(ctx)]
