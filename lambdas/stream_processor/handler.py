"""Batch inference Lambda for a Kinesis event source mapping (ReportBatchItemFailures).

Each record's data is base64 JSON ``{"features": [numbers...], "requestId": str?}``.
Valid records are scored by the SageMaker endpoint ``ENDPOINT_NAME`` with as few
InvokeEndpoint calls as ``MAX_PAYLOAD_BYTES`` allows, and stored in ``TABLE_NAME`` with
BatchWriteItem.

Failure handling:

* A malformed record (bad base64/JSON, nested too deeply, a number out of range, invalid
  features, or too large for one request) can never succeed on retry. Each is validated on its
  own and set aside without failing the batch: sent with its reason, location and data to the
  failure queue ``FAILURE_QUEUE_URL`` (SQS SendMessageBatch), and logged as a poison record.
  Without that queue, or when sending fails, it is reported as a failure if
  ``REPORT_MALFORMED=true`` (so the event source mapping's retries end in its on-failure
  destination), else skipped. The number set aside is in the batch log line.
* Records whose InvokeEndpoint call fails, or whose response is unusable, are reported.
* Items DynamoDB leaves unprocessed are retried with bounded exponential backoff; records
  whose items are still unprocessed afterwards are reported.
* Only a failure affecting the whole batch (such as unreadable SSM configuration) raises,
  so that the whole batch is retried.

Item ids are the record's ``requestId`` or, without one, derived from the Kinesis sequence
number; the timestamp is the record's arrival time. A replayed batch therefore overwrites
its earlier items instead of duplicating them.

Environment: as the preprocess handler (ENDPOINT_NAME, TABLE_NAME, ACTIVE_VERSION_PARAM,
DEPLOYMENT_PARAM, SSM_CACHE_TTL_SECONDS, PREDICTION_TTL_DAYS, FEATURE_COUNT, LOG_LEVEL), plus
MAX_PAYLOAD_BYTES (request body limit, default 5000000), FAILURE_QUEUE_URL (optional) and
REPORT_MALFORMED (default false).

Deployed with ``inference_common`` (``lambdas/common``) beside it, it imports only that module,
the standard library and boto3.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any

import inference_common as common
from boto3.dynamodb.types import TypeSerializer
from inference_common import CALL_ERRORS, UpstreamError, env_int, to_dynamo

# Clocks and sleep are module attributes so tests can replace them.
_now = time.monotonic  # drives the SSM cache TTL
_wall = time.time  # drives expirationTime
_sleep = time.sleep  # backoff between BatchWriteItem retries

_WRITE_BATCH_SIZE = 25
_MAX_WRITE_ATTEMPTS = 4
_BACKOFF_BASE_SECONDS = 0.05
_BACKOFF_CAP_SECONDS = 1.0
_MAX_FEATURES_BYTES = 256_000  # keeps an item well under DynamoDB's 400 KB item limit
_ENVELOPE_HEAD = '{"instances":['
_ENVELOPE_TAIL = "]}"
_ID_NAMESPACE = uuid.UUID("5d0d7f56-3c1e-4c55-9a57-1b4f0f6c2a10")
# A poison record's data kept in its failure message: ten of them stay under the 256 KiB
# SQS allows for a whole SendMessageBatch request.
_MAX_FAILURE_DATA_CHARS = 20_000
_SQS_BATCH_SIZE = 10

_serializer = TypeSerializer()
_runtime = common.Runtime("stream_processor", now=lambda: _now())
_client, _log, logger = _runtime.client, _runtime.log, _runtime.logger


class BadRecord(ValueError):
    """The record can never be processed (a poison record)."""


@dataclass
class _Record:
    sequence_number: str
    prediction_id: str
    timestamp_ms: int
    features: list[int | float]
    instance: str  # the features serialized as one entry of "instances"


def _decode(raw: dict[str, Any], sequence_number: str, max_bytes: int) -> _Record:
    kinesis = raw.get("kinesis") or {}
    try:
        payload = json.loads(
            base64.b64decode(kinesis.get("data", ""), validate=True), parse_int=common.parse_int
        )
    except (binascii.Error, TypeError, ValueError) as exc:
        raise BadRecord(f"data is not base64-encoded JSON: {exc}") from exc
    except RecursionError as exc:
        raise BadRecord("data is nested too deeply") from exc
    if not isinstance(payload, dict):
        raise BadRecord("data must be a JSON object")
    features = common.check_features(payload.get("features"), BadRecord)
    request_id = payload.get("requestId")
    if request_id is not None and (
        not isinstance(request_id, str) or not 0 < len(request_id) <= 256
    ):
        raise BadRecord("'requestId' must be a non-empty string of at most 256 characters")
    instance = json.dumps(features, separators=(",", ":"))
    if len(instance) > _MAX_FEATURES_BYTES:
        raise BadRecord(f"'features' is larger than {_MAX_FEATURES_BYTES} bytes as JSON")
    if len(_ENVELOPE_HEAD) + len(instance) + len(_ENVELOPE_TAIL) > max_bytes:
        raise BadRecord("features too large for one InvokeEndpoint request")
    arrival = kinesis.get("approximateArrivalTimestamp")
    if not isinstance(arrival, int | float) or isinstance(arrival, bool):
        arrival = _wall()
    timestamp_ms = int(arrival * 1000)
    source = f"{raw.get('eventSourceARN', '')}/{sequence_number}"
    return _Record(
        sequence_number=sequence_number,
        prediction_id=request_id or str(uuid.uuid5(_ID_NAMESPACE, source)),
        timestamp_ms=timestamp_ms,
        features=features,
        instance=instance,
    )


def pack(records: list[_Record], max_bytes: int) -> list[list[_Record]]:
    """Group records, in order, into request bodies of at most ``max_bytes`` bytes."""
    chunks: list[list[_Record]] = []
    current: list[_Record] = []
    size = len(_ENVELOPE_HEAD) + len(_ENVELOPE_TAIL)
    for record in records:
        extra = len(record.instance) + (1 if current else 0)  # 1 for the comma
        if current and size + extra > max_bytes:
            chunks.append(current)
            current, size = [], len(_ENVELOPE_HEAD) + len(_ENVELOPE_TAIL)
            extra = len(record.instance)
        current.append(record)
        size += extra
    if current:
        chunks.append(current)
    return chunks


def _invoke(chunk: list[_Record]) -> tuple[list[Any], str | None]:
    body = _ENVELOPE_HEAD + ",".join(r.instance for r in chunk) + _ENVELOPE_TAIL
    return common.invoke_endpoint(
        _client("sagemaker-runtime"),
        len(chunk),
        EndpointName=os.environ["ENDPOINT_NAME"],
        Body=body.encode("ascii"),
    )


def _score(
    records: list[_Record], max_bytes: int, failed: set[str]
) -> list[tuple[_Record, dict[str, Any]]]:
    """Score ``records``; return (record, item) pairs and add failed sequence numbers."""
    active, deployment = _runtime.params.get()
    expiration = int(_wall()) + env_int("PREDICTION_TTL_DAYS", 30) * 86400
    scored: list[tuple[_Record, dict[str, Any]]] = []
    for chunk in pack(records, max_bytes):
        started = _now()
        try:
            predictions, invoked = _invoke(chunk)
        except UpstreamError as exc:
            failed.update(r.sequence_number for r in chunk)
            _log(logging.ERROR, "chunk failed", exc_info=True, error=str(exc), records=len(chunk))
            continue
        version = _runtime.served_version(deployment, invoked, active)
        _log(
            logging.INFO,
            "chunk scored",
            records=len(chunk),
            variant=invoked,
            latency_ms=round((_now() - started) * 1000, 1),
        )
        for record, prediction in zip(chunk, predictions, strict=True):
            try:
                stored = to_dynamo(prediction)
            except ValueError as exc:
                failed.add(record.sequence_number)
                _log(
                    logging.ERROR,
                    "unstorable prediction",
                    sequenceNumber=record.sequence_number,
                    error=str(exc),
                )
                continue
            item = {
                "predictionId": record.prediction_id,
                "timestamp": record.timestamp_ms,
                "modelVersion": version,
                "invokedVariant": invoked,
                "predictions": stored,
                "features": to_dynamo(record.features),
                "expirationTime": expiration,
                "source": "stream",
                "sequenceNumber": record.sequence_number,
            }
            scored.append((record, item))
    return scored


def _batch_write(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Write up to 25 serialized items; return the ones still unprocessed after retries."""
    table = os.environ["TABLE_NAME"]
    requests = [{"PutRequest": {"Item": item}} for item in items]
    for attempt in range(_MAX_WRITE_ATTEMPTS):
        if attempt:
            _sleep(min(_BACKOFF_BASE_SECONDS * 2 ** (attempt - 1), _BACKOFF_CAP_SECONDS))
        try:
            response = _client("dynamodb").batch_write_item(RequestItems={table: requests})
        except CALL_ERRORS:
            _log(logging.ERROR, "batch write failed", exc_info=True, items=len(requests))
            break
        requests = response.get("UnprocessedItems", {}).get(table, [])
        if not requests:
            return []
    return [r["PutRequest"]["Item"] for r in requests]


def _write(scored: list[tuple[_Record, dict[str, Any]]], failed: set[str]) -> None:
    """Store the items, adding the sequence numbers of records not stored to ``failed``."""
    # One item per table key: BatchWriteItem rejects a request that repeats a key.
    by_key: dict[tuple[str, int], tuple[dict[str, Any], list[str]]] = {}
    for record, item in scored:
        key = (record.prediction_id, record.timestamp_ms)
        seqs = by_key[key][1] if key in by_key else []
        serialized = {k: _serializer.serialize(v) for k, v in item.items() if v is not None}
        by_key[key] = (serialized, [*seqs, record.sequence_number])
    entries = list(by_key.values())
    for start in range(0, len(entries), _WRITE_BATCH_SIZE):
        batch = entries[start : start + _WRITE_BATCH_SIZE]
        unprocessed = _batch_write([item for item, _ in batch])
        unprocessed_keys = {(i["predictionId"]["S"], int(i["timestamp"]["N"])) for i in unprocessed}
        for item, seqs in batch:
            if (item["predictionId"]["S"], int(item["timestamp"]["N"])) in unprocessed_keys:
                failed.update(seqs)
                _log(logging.ERROR, "record not stored", sequenceNumbers=seqs)


def _failure_message(raw: dict[str, Any], reason: str) -> str:
    kinesis = raw.get("kinesis") or {}
    data = kinesis.get("data")
    data = data if isinstance(data, str) else ""
    return json.dumps(
        {
            "reason": reason,
            "sequenceNumber": kinesis.get("sequenceNumber"),
            "partitionKey": kinesis.get("partitionKey"),
            "approximateArrivalTimestamp": kinesis.get("approximateArrivalTimestamp"),
            "eventSourceARN": raw.get("eventSourceARN"),
            "data": data[:_MAX_FAILURE_DATA_CHARS],
            "dataTruncated": len(data) > _MAX_FAILURE_DATA_CHARS,
        },
        default=str,
    )


def _set_aside(poisoned: list[tuple[dict[str, Any], str]]) -> list[str]:
    """Send poison records with their reasons to the failure queue; return the sequence
    numbers of those not sent."""
    queue = os.environ.get("FAILURE_QUEUE_URL", "").strip()
    sequence_numbers = [raw["kinesis"]["sequenceNumber"] for raw, _ in poisoned]
    if not queue:
        return sequence_numbers
    unsent: list[str] = []
    for start in range(0, len(poisoned), _SQS_BATCH_SIZE):
        chunk = list(enumerate(poisoned[start : start + _SQS_BATCH_SIZE]))
        entries = [
            {"Id": str(i), "MessageBody": _failure_message(raw, reason)}
            for i, (raw, reason) in chunk
        ]
        try:
            answer = _client("sqs").send_message_batch(QueueUrl=queue, Entries=entries)
            failed_ids = {f["Id"] for f in answer.get("Failed", [])}
        except CALL_ERRORS:
            _log(logging.ERROR, "could not send poison records", exc_info=True)
            failed_ids = {e["Id"] for e in entries}
        unsent += [sequence_numbers[start + int(i)] for i in sorted(failed_ids, key=int)]
    return unsent


def handler(event: dict[str, Any], context: Any) -> dict[str, list[dict[str, str]]]:
    """Kinesis event source mapping entry point."""
    report_malformed = os.environ.get("REPORT_MALFORMED", "false").strip().lower() == "true"
    max_bytes = env_int("MAX_PAYLOAD_BYTES", 5_000_000)
    raw_records = event.get("Records") or []
    order: list[str] = []
    failed: set[str] = set()
    valid: list[_Record] = []
    poisoned: list[tuple[dict[str, Any], str]] = []
    poison = 0
    for raw in raw_records:
        sequence_number = (raw.get("kinesis") or {}).get("sequenceNumber")
        if not isinstance(sequence_number, str) or not sequence_number:
            poison += 1
            _log(logging.WARNING, "poison record: no sequence number")
            continue
        order.append(sequence_number)
        try:
            valid.append(_decode(raw, sequence_number, max_bytes))
        except BadRecord as exc:
            poison += 1
            _log(logging.WARNING, "poison record", sequenceNumber=sequence_number, error=str(exc))
            poisoned.append((raw, str(exc)))
    if poisoned:
        unsent = _set_aside(poisoned)
        if report_malformed:
            failed.update(unsent)
    if valid:
        _write(_score(valid, max_bytes, failed), failed)
    _log(
        logging.INFO,
        "batch processed",
        records=len(raw_records),
        poison=poison,
        failed=len(failed),
    )
    return {"batchItemFailures": [{"itemIdentifier": s} for s in order if s in failed]}
