"""A Kinesis event source mapping of the embedded AWS, run locally by the real Lambda code.

moto keeps the mapping's configuration but never reads the stream. :class:`StreamPoller`
does what Lambda's poller does for it, reading everything through boto3: the mapping (found
by the function's ARN), the stream's shards and records, the function (run by
:class:`~mlpipe.local.functions.LocalFunctions`) and the on-failure destination.

* Position: shards known at the first poll start at the mapping's ``StartingPosition``
  (``LATEST``, ``TRIM_HORIZON`` or ``AT_TIMESTAMP``); shards that appear later, from their
  beginning; a child shard is read once its parent is finished. Progress is checkpointed per
  shard (in memory, for the life of the poller), so a record that reached a successful
  invocation is never delivered again, and records are delivered in order per shard, one
  batch at a time.
* Batching: a batch holds at most ``BatchSize`` records (and at most 6 MB of event); it is
  delivered when it is full, or when ``MaximumBatchingWindowInSeconds`` have passed since its
  first record was read.
* Errors: with ``ReportBatchItemFailures``, a response listing failed sequence numbers
  checkpoints the records before the lowest one and retries from it; an invalid response
  (an unknown, empty or missing ``itemIdentifier``) fails the whole batch, as does a function
  error or a failure reported for the batch's first record. A batch that fails as a whole is
  split in two when ``BisectBatchOnFunctionError`` is on; otherwise (or once it is a single
  record) it is retried, up to ``MaximumRetryAttempts`` times (-1: until its records expire).
  Splitting does not consume retries, and neither does progress: the count is of consecutive
  failed invocations of the same records. Records whose retries are exhausted,
  or older than ``MaximumRecordAgeInSeconds`` (or the stream's retention), are skipped and
  their location (``KinesisBatchInfo``) is sent to the ``DestinationConfig.OnFailure`` SQS
  queue or SNS topic in the shape Lambda sends.

Timing is injectable (``clock`` for windows and poll waits, ``wall`` for record ages and
timestamps) and :meth:`StreamPoller.poll_once` does one round of work, so tests drive the
poller step by step; :meth:`StreamPoller.start` runs the same rounds on a thread.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from mlpipe.local.functions import ClientFactory, Invocation, LocalFunctions
from mlpipe.local.metrics import MetricSink
from mlpipe.local.service import Periodic
from mlpipe.local.stream_mapping import MappingConfig, MappingNotFoundError, find_mapping

__all__ = [
    "MAX_EVENT_BYTES",
    "MappingConfig",
    "MappingNotFoundError",
    "StreamPoller",
    "find_mapping",
]

log = logging.getLogger(__name__)

Clock = Callable[[], float]

MAX_EVENT_BYTES = 6 * 1024 * 1024  # Lambda's synchronous invocation payload limit
MAX_RECORDS_PER_READ = 10_000  # GetRecords' largest Limit
_RECORD_OVERHEAD_BYTES = 600  # the event's fields around one record's data, generously
RETRIES_EXHAUSTED = "RetryAttemptsExhausted"
RECORD_AGE_EXCEEDED = "RecordAgeExceeded"


@dataclass(frozen=True)
class _Record:
    sequence_number: str
    partition_key: str
    data: bytes
    arrival: float  # epoch seconds
    read_at: float  # poller clock

    @property
    def size(self) -> int:
        return 4 * ((len(self.data) + 2) // 3) + len(self.partition_key) + _RECORD_OVERHEAD_BYTES


@dataclass
class _Batch:
    records: list[_Record]
    failures: int = 0  # consecutive failed invocations of exactly these records
    invocations: int = 0
    last_error: dict[str, Any] | None = None


@dataclass
class _Shard:
    shard_id: str
    parent_id: str | None
    from_start: bool = False  # appeared after the first listing: read from its beginning
    iterator: str | None = None
    closed: bool = False
    last_read: str | None = None
    buffer: list[_Record] = field(default_factory=list)
    batch: _Batch | None = None
    queued: list[_Batch] = field(default_factory=list)  # the halves of a split batch

    @property
    def finished(self) -> bool:
        return self.closed and not self.buffer and self.batch is None and not self.queued


def _iso(epoch: float) -> str:
    return (
        datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


class StreamPoller(Periodic):
    """Feeds the function ``function_name`` from its Kinesis event source mapping."""

    failure_level = logging.ERROR
    eager = True

    def __init__(
        self,
        clients: ClientFactory,
        functions: LocalFunctions,
        function_name: str,
        *,
        event_source_arn: str | None = None,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
        poll_interval: float = 1.0,
        config_ttl: float = 5.0,
        metrics: MetricSink | None = None,
    ) -> None:
        super().__init__(poll_interval)
        self.clients = clients
        self.metrics = metrics
        self.functions = functions
        self.clock = clock
        self.wall = wall
        self.config_ttl = config_ttl
        function = functions.configuration(function_name)
        self.function_arn = function.arn
        self.failure = f"stream poller for {self.function_arn} failed a round"
        self.role = function.role
        self.region = function.region
        self.mapping = find_mapping(clients, self.function_arn, event_source_arn)
        self._mapping_read_at = clock()
        self.thread_name = f"mlpipe-stream-{self.mapping.uuid[:8]}"
        summary = clients("kinesis").describe_stream_summary(StreamName=self.mapping.stream_name)[
            "StreamDescriptionSummary"
        ]
        self.retention_seconds = int(summary["RetentionPeriodHours"]) * 3600
        self.shards: dict[str, _Shard] = {}
        self.checkpoints: dict[str, str] = {}
        self.invocations = 0
        self.delivered = 0  # records a successful invocation processed
        self.discarded = 0  # records skipped and reported to the on-failure destination
        self._first_listing = True
        self._lock = threading.Lock()

    def run_once(self) -> int:
        return self.poll_once()

    # --- one round -------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Records read but not yet checkpointed."""
        with self._lock:
            return sum(
                len(s.buffer)
                + (len(s.batch.records) if s.batch else 0)
                + sum(len(b.records) for b in s.queued)
                for s in self.shards.values()
            )

    def poll_once(self) -> int:
        """Read every shard once and deliver what is ready; returns the invocations made.

        A shard whose batch failed is retried on the next round, not in this one.
        """
        with self._lock:
            self._refresh_mapping()
            if not self.mapping.enabled:
                return 0
            self._list_shards()
            made = 0
            for shard in list(self.shards.values()):
                parent = self.shards.get(shard.parent_id or "")
                if parent is not None and not parent.finished:
                    continue
                made += self._poll_shard(shard)
            return made

    def _refresh_mapping(self) -> None:
        if self.clock() - self._mapping_read_at < self.config_ttl:
            return
        try:
            found = self.clients("lambda").get_event_source_mapping(UUID=self.mapping.uuid)
            self.mapping = MappingConfig.from_lambda(found)
        except ClientError:
            log.warning("could not re-read mapping %s", self.mapping.uuid, exc_info=True)
        self._mapping_read_at = self.clock()

    def _list_shards(self) -> None:
        kinesis = self.clients("kinesis")
        params: dict[str, Any] = {"StreamName": self.mapping.stream_name}
        while True:
            page = kinesis.list_shards(**params)
            for found in page.get("Shards", []):
                if found["ShardId"] not in self.shards:
                    # Positioned at once, even a child that must wait for its parent: LATEST
                    # is the tip of the stream when the mapping starts reading.
                    shard = _Shard(
                        found["ShardId"],
                        found.get("ParentShardId"),
                        from_start=not self._first_listing,
                    )
                    self._position(shard)
                    self.shards[shard.shard_id] = shard
            token = page.get("NextToken")
            if not token:
                break
            params = {"NextToken": token}
        self._first_listing = False

    def _position(self, shard: _Shard) -> None:
        kinesis = self.clients("kinesis")
        params: dict[str, Any] = {
            # By name: moto's iterators for StreamARN lose the stream.
            "StreamName": self.mapping.stream_name,
            "ShardId": shard.shard_id,
        }
        after = shard.last_read or self.checkpoints.get(shard.shard_id)
        if after is not None:
            params.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=after)
        elif shard.from_start:
            params["ShardIteratorType"] = "TRIM_HORIZON"
        elif self.mapping.starting_position == "AT_TIMESTAMP":
            params.update(
                ShardIteratorType="AT_TIMESTAMP", Timestamp=self.mapping.starting_timestamp
            )
        else:
            params["ShardIteratorType"] = self.mapping.starting_position
        shard.iterator = kinesis.get_shard_iterator(**params)["ShardIterator"]

    def _read(self, shard: _Shard) -> None:
        if shard.closed or len(shard.buffer) >= self.mapping.batch_size:
            return
        kinesis = self.clients("kinesis")
        try:
            page = kinesis.get_records(ShardIterator=shard.iterator, Limit=MAX_RECORDS_PER_READ)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code == "ExpiredIteratorException":
                self._position(shard)
                return
            if code == "ProvisionedThroughputExceededException":
                return
            raise
        now = self.clock()
        self._publish_age(page.get("Records", []))
        for raw in page.get("Records", []):
            arrival = raw.get("ApproximateArrivalTimestamp")
            shard.buffer.append(
                _Record(
                    sequence_number=raw["SequenceNumber"],
                    partition_key=raw.get("PartitionKey", ""),
                    data=bytes(raw.get("Data") or b""),
                    arrival=arrival.timestamp() if isinstance(arrival, datetime) else self.wall(),
                    read_at=now,
                )
            )
            shard.last_read = raw["SequenceNumber"]
        shard.iterator = page.get("NextShardIterator")
        if shard.iterator is None:
            shard.closed = True

    def _publish_age(self, records: list[dict[str, Any]]) -> None:
        """Kinesis's GetRecords.IteratorAgeMilliseconds: how old the last record a GetRecords
        call returned is (0 when it returned none: the reader is caught up)."""
        if self.metrics is None:
            return
        arrival = records[-1].get("ApproximateArrivalTimestamp") if records else None
        age = 0.0
        if isinstance(arrival, datetime):
            age = max(0.0, self.wall() - arrival.timestamp()) * 1000
        dims = {"StreamName": self.mapping.stream_name}
        name = "GetRecords.IteratorAgeMilliseconds"
        self.metrics.put("AWS/Kinesis", name, age, "Milliseconds", dims)

    def _next_batch(self, shard: _Shard) -> _Batch | None:
        if shard.queued:
            return shard.queued.pop(0)
        buffer = shard.buffer
        if not buffer:
            return None
        mapping = self.mapping
        full = len(buffer) >= mapping.batch_size
        waited = self.clock() - buffer[0].read_at >= mapping.window_seconds
        if not (full or waited or shard.closed):
            return None
        size, count = 0, 0
        for record in buffer[: mapping.batch_size]:
            if count and size + record.size > MAX_EVENT_BYTES:
                break
            size += record.size
            count += 1
        batch = _Batch(buffer[:count])
        del buffer[:count]
        return batch

    def _poll_shard(self, shard: _Shard) -> int:
        if shard.batch is None and not shard.queued:
            self._read(shard)
        made = 0
        while True:
            if shard.batch is None:
                shard.batch = self._next_batch(shard)
                if shard.batch is None:
                    return made
            if self._expire(shard):
                continue
            made += 1
            if not self._deliver(shard, shard.batch):
                return made  # retried on the next round

    # --- delivery --------------------------------------------------------------------------

    def _checkpoint(self, shard: _Shard, record: _Record) -> None:
        self.checkpoints[shard.shard_id] = record.sequence_number

    def _expire(self, shard: _Shard) -> bool:
        """Skip the leading records of the current batch that are too old; True if any."""
        batch = shard.batch
        assert batch is not None
        limits = [self.retention_seconds]
        if self.mapping.max_record_age >= 0:
            limits.append(self.mapping.max_record_age)
        now = self.wall()
        expired = 0
        while expired < len(batch.records) and now - batch.records[expired].arrival > min(limits):
            expired += 1
        if not expired:
            return False
        old = batch.records[:expired]
        self._discard(shard, _Batch(old, invocations=batch.invocations), RECORD_AGE_EXCEEDED)
        batch.records = batch.records[expired:]
        if not batch.records:
            shard.batch = None
        return True

    def _event(self, shard: _Shard, records: list[_Record]) -> dict[str, Any]:
        mapping = self.mapping
        return {
            "Records": [
                {
                    "kinesis": {
                        "kinesisSchemaVersion": "1.0",
                        "partitionKey": r.partition_key,
                        "sequenceNumber": r.sequence_number,
                        "data": base64.b64encode(r.data).decode(),
                        "approximateArrivalTimestamp": round(r.arrival, 3),
                    },
                    "eventSource": "aws:kinesis",
                    "eventVersion": "1.0",
                    "eventID": f"{shard.shard_id}:{r.sequence_number}",
                    "eventName": "aws:kinesis:record",
                    "invokeIdentityArn": self.role,
                    "awsRegion": self.region,
                    "eventSourceARN": mapping.event_source_arn,
                }
                for r in records
            ]
        }

    def _failed_from(self, batch: _Batch, outcome: Invocation) -> int | None:
        """Index of the first record to retry; None when the batch succeeded."""
        if not outcome.ok:
            return 0
        if not self.mapping.report_item_failures:
            return None
        payload = outcome.payload
        if not isinstance(payload, dict):
            return None  # an empty or null response is a success
        failures = payload.get("batchItemFailures")
        if not failures:
            return None
        if not isinstance(failures, list):
            return 0
        index = {r.sequence_number: i for i, r in enumerate(batch.records)}
        positions = []
        for failure in failures:
            identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
            if not isinstance(identifier, str) or identifier not in index:
                return 0  # an invalid response fails the whole batch
            positions.append(index[identifier])
        return min(positions)

    def _deliver(self, shard: _Shard, batch: _Batch) -> bool:
        """Invoke the function with the batch once; True when it fully succeeded."""
        outcome = self.functions.invoke(self.function_arn, self._event(shard, batch.records))
        self.invocations += 1
        batch.invocations += 1
        failed_from = self._failed_from(batch, outcome)
        if failed_from is None:
            self._checkpoint(shard, batch.records[-1])
            self.delivered += len(batch.records)
            shard.batch = None
            return True
        batch.last_error = outcome.error
        if failed_from > 0:  # progress: retry from the first failed record
            self._checkpoint(shard, batch.records[failed_from - 1])
            self.delivered += failed_from
            shard.batch = _Batch(batch.records[failed_from:])
            return False
        records = batch.records
        if self.mapping.bisect and len(records) > 1:
            half = len(records) // 2
            shard.batch = None
            shard.queued[:0] = [_Batch(records[:half]), _Batch(records[half:])]
            return False
        if 0 <= self.mapping.max_retries <= batch.failures:
            self._discard(shard, batch, RETRIES_EXHAUSTED)
            shard.batch = None
            return False
        batch.failures += 1
        return False

    def _discard(self, shard: _Shard, batch: _Batch, condition: str) -> None:
        """Skip the batch's records, telling the on-failure destination where they are."""
        records = batch.records
        self._checkpoint(shard, records[-1])
        self.discarded += len(records)
        log.warning(
            "skipping %d records of %s (%s): %s..%s",
            len(records),
            shard.shard_id,
            condition,
            records[0].sequence_number,
            records[-1].sequence_number,
        )
        destination = self.mapping.on_failure
        if not destination:
            return
        response: dict[str, Any] = {"statusCode": 200, "executedVersion": "$LATEST"}
        if batch.last_error is not None:
            response["functionError"] = "Unhandled"
        message = {
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": self.function_arn,
                "condition": condition,
                "approximateInvokeCount": batch.invocations,
            },
            "responseContext": response,
            "version": "1.0",
            "timestamp": _iso(self.wall()),
            "KinesisBatchInfo": {
                "shardId": shard.shard_id,
                "startSequenceNumber": records[0].sequence_number,
                "endSequenceNumber": records[-1].sequence_number,
                "approximateArrivalOfFirstRecord": _iso(records[0].arrival),
                "approximateArrivalOfLastRecord": _iso(records[-1].arrival),
                "batchSize": len(records),
                "streamArn": self.mapping.event_source_arn,
            },
        }
        try:
            self._send(destination, json.dumps(message))
        except ClientError:
            log.exception("could not send the failure record to %s", destination)

    def _send(self, destination: str, body: str) -> None:
        parts = destination.split(":")
        service, account, name = parts[2], parts[4], parts[5]
        if service == "sqs":
            sqs = self.clients("sqs")
            url = sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
            sqs.send_message(QueueUrl=url, MessageBody=body)
        elif service == "sns":
            self.clients("sns").publish(TopicArn=destination, Message=body)
        else:
            log.warning("on-failure destination %s is not supported locally", destination)
