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

This module is deployed on its own and imports only the standard library and boto3.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import sys
import time
import uuid
from dataclasses import dataclass
from decimal import DecimalException
from typing import Any

import boto3
from boto3.dynamodb.types import DYNAMODB_CONTEXT, TypeSerializer
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as EndpointUnreachable

# Clocks, sleep and clients are module attributes so tests can replace them.
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
# Integers longer than this are refused before Python converts them (DynamoDB keeps 38 digits).
_MAX_INT_DIGITS = 64
# A poison record's data kept in its failure message: ten of them stay under the 256 KiB
# SQS allows for a whole SendMessageBatch request.
_MAX_FAILURE_DATA_CHARS = 20_000
_SQS_BATCH_SIZE = 10

_CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3})
_clients: dict[str, Any] = {}
_serializer = TypeSerializer()


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {"level": record.levelname, "message": record.getMessage()}
        entry.update(getattr(record, "ctx", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


logger = logging.getLogger("stream_processor")
if not logger.handlers:
    _log_handler = logging.StreamHandler(sys.stdout)
    _log_handler.setFormatter(_JsonFormatter())
    logger.addHandler(_log_handler)
    logger.propagate = False
logger.setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())


def _log(level: int, message: str, exc_info: bool = False, **ctx: Any) -> None:
    logger.log(level, message, exc_info=exc_info, extra={"ctx": ctx})


def _client(service: str) -> Any:
    """Return the cached boto3 client for ``service``, creating it on first use."""
    client = _clients.get(service)
    if client is None:
        client = _clients[service] = boto3.client(service, config=_CLIENT_CONFIG)
    return client


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


class BadRecord(ValueError):
    """The record can never be processed (a poison record)."""


class UpstreamError(RuntimeError):
    """The model endpoint failed or answered with something unusable."""


class _ParamCache:
    """Active version and deployment state from SSM, refreshed at most once per TTL."""

    def __init__(self) -> None:
        self._value: tuple[str, dict[str, Any]] | None = None
        self._fetched_at = 0.0

    def clear(self) -> None:
        self._value = None

    def get(self) -> tuple[str, dict[str, Any]]:
        ttl = _env_int("SSM_CACHE_TTL_SECONDS", 30)
        if self._value is None or _now() - self._fetched_at >= ttl:
            self._value = self._fetch()
            self._fetched_at = _now()
        return self._value

    @staticmethod
    def _fetch() -> tuple[str, dict[str, Any]]:
        active_name = os.environ["ACTIVE_VERSION_PARAM"]
        deployment_name = os.environ["DEPLOYMENT_PARAM"]
        response = _client("ssm").get_parameters(Names=[active_name, deployment_name])
        values = {p["Name"]: p["Value"] for p in response["Parameters"]}
        missing = [n for n in (active_name, deployment_name) if n not in values]
        if missing:
            raise RuntimeError(f"SSM parameters not found: {missing}")
        deployment = json.loads(values[deployment_name])
        if not isinstance(deployment, dict) or not isinstance(deployment.get("variants"), list):
            raise RuntimeError(f"SSM parameter {deployment_name} has no 'variants' list")
        return values[active_name], deployment


_params = _ParamCache()


def to_dynamo(value: Any) -> Any:
    """Return ``value`` with every number as a DynamoDB-safe Decimal (recursively).

    Raises ValueError for NaN, infinity or numbers DynamoDB cannot store.
    """
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        try:
            number = DYNAMODB_CONTEXT.create_decimal(str(value))
        except DecimalException as exc:
            raise ValueError(f"number out of range for storage: {value!r}") from exc
        if not number.is_finite():
            raise ValueError(f"number must be finite: {value!r}")
        return number
    if isinstance(value, list | tuple):
        return [to_dynamo(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_dynamo(v) for k, v in value.items()}
    raise ValueError(f"unsupported value type: {type(value).__name__}")


class _HugeInt:
    """An integer literal too long to convert: refused with its field's name."""

    def __init__(self, digits: str) -> None:
        self.length = len(digits.lstrip("-"))


def _parse_int(digits: str) -> int | _HugeInt:
    return _HugeInt(digits) if len(digits) > _MAX_INT_DIGITS else int(digits)


def _validate_features(features: Any) -> list[int | float]:
    if not isinstance(features, list) or not features:
        raise BadRecord("'features' must be a non-empty list of numbers")
    expected = _env_int("FEATURE_COUNT", 0)
    if expected and len(features) != expected:
        raise BadRecord(f"'features' must have {expected} values, got {len(features)}")
    for i, value in enumerate(features):
        if isinstance(value, _HugeInt):
            raise BadRecord(f"'features[{i}]' is out of range: a {value.length}-digit integer")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BadRecord(f"'features[{i}]' must be a number")
        try:
            to_dynamo(value)
        except ValueError as exc:
            raise BadRecord(f"'features[{i}]' must be a finite number: {exc}") from exc
    return features


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
            base64.b64decode(kinesis.get("data", ""), validate=True), parse_int=_parse_int
        )
    except (binascii.Error, TypeError, ValueError) as exc:
        raise BadRecord(f"data is not base64-encoded JSON: {exc}") from exc
    except RecursionError as exc:
        raise BadRecord("data is nested too deeply") from exc
    if not isinstance(payload, dict):
        raise BadRecord("data must be a JSON object")
    features = _validate_features(payload.get("features"))
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
    try:
        response = _client("sagemaker-runtime").invoke_endpoint(
            EndpointName=os.environ["ENDPOINT_NAME"],
            ContentType="application/json",
            Accept="application/json",
            Body=body.encode("ascii"),
        )
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "Unknown")
        raise UpstreamError(f"model endpoint error: {code}") from exc
    except (EndpointUnreachable, HTTPClientError) as exc:
        raise UpstreamError(f"model endpoint unreachable: {type(exc).__name__}") from exc
    try:
        predictions = json.loads(response["Body"].read())["predictions"]
    except (ValueError, KeyError, TypeError) as exc:
        raise UpstreamError("model endpoint returned an invalid response") from exc
    if not isinstance(predictions, list) or len(predictions) != len(chunk):
        raise UpstreamError(
            f"model endpoint returned a wrong number of predictions for {len(chunk)} instances"
        )
    return predictions, response.get("InvokedProductionVariant")


def _version_of(variant: str | None, active: str, deployment: dict[str, Any]) -> str:
    for v in deployment["variants"]:
        if isinstance(v, dict) and v.get("name") == variant and v.get("version"):
            return str(v["version"])
    _log(
        logging.WARNING,
        "invoked variant not in deployment state; using active version",
        variant=variant,
        modelVersion=active,
    )
    return active


def _score(
    records: list[_Record], max_bytes: int, failed: set[str]
) -> list[tuple[_Record, dict[str, Any]]]:
    """Score ``records``; return (record, item) pairs and add failed sequence numbers."""
    active, deployment = _params.get()
    expiration = int(_wall()) + _env_int("PREDICTION_TTL_DAYS", 30) * 86400
    scored: list[tuple[_Record, dict[str, Any]]] = []
    for chunk in pack(records, max_bytes):
        started = _now()
        try:
            predictions, invoked = _invoke(chunk)
        except UpstreamError as exc:
            failed.update(r.sequence_number for r in chunk)
            _log(logging.ERROR, "chunk failed", exc_info=True, error=str(exc), records=len(chunk))
            continue
        version = _version_of(invoked, active, deployment)
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
        except (ClientError, EndpointUnreachable, HTTPClientError):
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
        except (ClientError, EndpointUnreachable, HTTPClientError):
            _log(logging.ERROR, "could not send poison records", exc_info=True)
            failed_ids = {e["Id"] for e in entries}
        unsent += [sequence_numbers[start + int(i)] for i in sorted(failed_ids, key=int)]
    return unsent


def handler(event: dict[str, Any], context: Any) -> dict[str, list[dict[str, str]]]:
    """Kinesis event source mapping entry point."""
    report_malformed = os.environ.get("REPORT_MALFORMED", "false").strip().lower() == "true"
    max_bytes = _env_int("MAX_PAYLOAD_BYTES", 5_000_000)
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
