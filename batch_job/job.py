"""The batch inference job: score this shard's chunks of the input and write the results.

Layout under ``DATA_BUCKET`` (``<chunk>`` is :func:`~batch_job.records.chunk_slug`):

* ``predictions/dt=<date>/model_version=<v>/run=<run id>/<chunk>.jsonl``: one line per record
* ``errors/run=<run id>/shard=<i>/<chunk>.jsonl``: rejected records with reason and raw line
* ``runs/<run id>/run.json``: start time and date, fixed by the first attempt of the run
* ``runs/<run id>/done/<chunk>``: written once a chunk's outputs and items are all stored

A chunk is marked done only after everything it produces is written, and everything it
produces has a deterministic key (S3 key, DynamoDB ``predictionId`` + ``timestamp``), so a rerun
with the same run id skips finished chunks and overwrites the partial output of interrupted ones.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from boto3.dynamodb.types import DYNAMODB_CONTEXT, TypeSerializer
from botocore.exceptions import ClientError

from .config import JobConfig
from .records import (
    PAYLOAD_TOO_LARGE,
    Line,
    ObjectParser,
    Record,
    chunk_slug,
    chunked,
    input_format,
    iter_lines,
    make_chunk_id,
    safe_name,
    shard_of,
)
from .scoring import Scorer, ScoringError, fits_alone, instance_size, pack_ranges

logger = logging.getLogger(__name__)

DYNAMODB_BATCH_SIZE = 25
_PREDICTION_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:mlpipe:batch-job:prediction")
_SERIALIZER = TypeSerializer()
_DAY_SECONDS = 86_400


def _log(level: int, message: str, **fields: Any) -> None:
    logger.log(level, message, extra={"fields": fields})


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@dataclass
class JobSummary:
    run_id: str
    shard_index: int
    shard_count: int
    objects: int = 0
    records: int = 0
    scored: int = 0
    bad: int = 0
    chunks_processed: int = 0
    chunks_skipped: int = 0
    invoke_calls: int = 0
    bad_limit: float = 0.0
    status: str = "running"

    @property
    def bad_records_exceeded(self) -> bool:
        return self.bad > self.bad_limit

    def as_fields(self) -> dict[str, Any]:
        return {
            "runId": self.run_id,
            "shard": self.shard_index,
            "shardCount": self.shard_count,
            "objects": self.objects,
            "records": self.records,
            "scored": self.scored,
            "bad": self.bad,
            "badLimit": self.bad_limit,
            "chunksProcessed": self.chunks_processed,
            "chunksSkipped": self.chunks_skipped,
            "invokeCalls": self.invoke_calls,
            "status": self.status,
        }


@dataclass(frozen=True)
class RunClock:
    """Start time (epoch ms) and date of a run, shared by all its shards and attempts."""

    started_ms: int
    run_date: str


def prediction_id(run_id: str, chunk_id: str, index: int) -> str:
    return str(uuid.uuid5(_PREDICTION_NAMESPACE, f"{run_id}\n{chunk_id}\n{index}"))


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats replaced by ``None`` (strict JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def to_dynamo(value: Any) -> Any:
    """A JSON-safe value storable in DynamoDB: numbers as Decimal, out-of-range ones as text."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        try:
            return DYNAMODB_CONTEXT.create_decimal(
                repr(value) if isinstance(value, float) else value
            )
        except ArithmeticError:
            return repr(value)
    if isinstance(value, dict):
        return {str(k): to_dynamo(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_dynamo(v) for v in value]
    return str(value)


def batch_write_all(
    dynamodb: Any,
    table: str,
    items: Sequence[dict[str, Any]],
    *,
    sleep: Callable[[float], None] = time.sleep,
    max_attempts: int = 8,
    base_delay: float = 0.1,
    max_delay: float = 5.0,
) -> None:
    """Put already-serialized items in batches of 25, retrying ``UnprocessedItems``.

    Retries wait ``base_delay * 2**n`` seconds, capped at ``max_delay``; after ``max_attempts``
    calls for one batch a :class:`RuntimeError` is raised.
    """
    for start in range(0, len(items), DYNAMODB_BATCH_SIZE):
        pending: dict[str, Any] = {
            table: [
                {"PutRequest": {"Item": item}}
                for item in items[start : start + DYNAMODB_BATCH_SIZE]
            ]
        }
        for attempt in range(max_attempts):
            if attempt:
                sleep(min(max_delay, base_delay * 2 ** (attempt - 1)))
            response = dynamodb.batch_write_item(RequestItems=pending)
            pending = response.get("UnprocessedItems") or {}
            if not pending:
                break
        else:
            left = sum(len(requests) for requests in pending.values())
            raise RuntimeError(
                f"DynamoDB left {left} items unprocessed after {max_attempts} attempts"
            )


def _read_json(s3: Any, bucket: str, key: str) -> Any:
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if _error_code(exc) in ("NoSuchKey", "404"):
            return None
        raise
    return json.loads(body)


def resolve_run_clock(s3: Any, config: JobConfig, clock: Callable[[], float]) -> RunClock:
    """Read the run manifest, creating it (first writer wins) if this is the run's first start.

    ``RUN_DATE``, when set, takes precedence over the recorded date.
    """
    bucket, key = config.data_bucket, f"runs/{config.run_id}/run.json"
    for _ in range(3):
        manifest = _read_json(s3, bucket, key)
        if manifest is None:
            now = clock()
            manifest = {
                "runId": config.run_id,
                "startedAt": int(now * 1000),
                "runDate": config.run_date or datetime.fromtimestamp(now, UTC).date().isoformat(),
            }
            try:
                s3.put_object(
                    Bucket=bucket,
                    Key=key,
                    Body=json.dumps(manifest).encode("utf-8"),
                    ContentType="application/json",
                    IfNoneMatch="*",
                )
            except ClientError as exc:
                if _error_code(exc) in ("PreconditionFailed", "ConditionalRequestConflict"):
                    continue
                raise
        try:
            started_ms = int(manifest["startedAt"])
            recorded_date = str(manifest["runDate"])
        except (KeyError, TypeError, ValueError) as exc:
            raise RuntimeError(f"run manifest s3://{bucket}/{key} is malformed") from exc
        if config.run_date and config.run_date != recorded_date:
            _log(
                logging.WARNING,
                "RUN_DATE differs from the date recorded for this run; using RUN_DATE",
                runDate=config.run_date,
                recordedRunDate=recorded_date,
            )
        return RunClock(started_ms, config.run_date or recorded_date)
    raise RuntimeError(f"could not create or read run manifest s3://{bucket}/{key}")


def _list_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(obj["Key"] for obj in page.get("Contents", []))
    return keys


def done_marker_prefix(run_id: str) -> str:
    return f"runs/{run_id}/done/"


@dataclass
class _Job:
    config: JobConfig
    s3: Any
    dynamodb: Any
    score: Scorer
    sleep: Callable[[float], None]
    clock: Callable[[], float]
    summary: JobSummary
    run: RunClock = RunClock(0, "")
    done: set[str] = field(default_factory=set)

    def execute(self) -> None:
        config = self.config
        self.run = resolve_run_clock(self.s3, config, self.clock)
        marker_prefix = done_marker_prefix(config.run_id)
        self.done = {
            key[len(marker_prefix) :]
            for key in _list_keys(self.s3, config.data_bucket, marker_prefix)
        }
        inputs = sorted(
            (key, fmt)
            for key in _list_keys(self.s3, config.data_bucket, config.input_prefix)
            if (fmt := input_format(key)) is not None
        )
        _log(
            logging.INFO,
            "job started",
            runId=config.run_id,
            runDate=self.run.run_date,
            shard=config.shard_index,
            shardCount=config.shard_count,
            inputPrefix=config.input_prefix,
            objects=len(inputs),
            doneChunks=len(self.done),
        )
        if not inputs:
            _log(logging.WARNING, "no input objects", inputPrefix=config.input_prefix)
        for key, fmt in inputs:
            self.summary.objects += 1
            self._process_object(key, fmt)

    def _process_object(self, key: str, fmt: str) -> None:
        config = self.config
        with tempfile.TemporaryFile() as spool:
            body = self.s3.get_object(Bucket=config.data_bucket, Key=key)["Body"]
            shutil.copyfileobj(body, spool, 1 << 20)
            spool.seek(0)
            lines = iter_lines(spool)
            parser = ObjectParser.open(fmt, lines)
            if parser is None:
                return
            for number, batch in enumerate(chunked(lines, config.chunk_size)):
                chunk_id = make_chunk_id(key, number)
                first = number * config.chunk_size
                if shard_of(chunk_id, config.shard_count) != config.shard_index:
                    # Another shard's chunk: only parsed while the object's feature count is
                    # still unknown, so every shard applies the same count check.
                    if parser.expected is None:
                        self._parse(parser, first, batch)
                    continue
                records = self._parse(parser, first, batch)
                slug = chunk_slug(chunk_id)
                self.summary.records += len(records)
                self.summary.bad += sum(not r.ok for r in records)
                if slug in self.done:
                    self.summary.chunks_skipped += 1
                    continue
                self._process_chunk(key, number, chunk_id, slug, records)

    def _parse(self, parser: ObjectParser, first: int, batch: list[Line]) -> list[Record]:
        records = []
        for offset, line in enumerate(batch):
            record = parser.parse(first + offset, line)
            if record.ok and record.features is not None:
                size = instance_size(record.features)
                if not fits_alone(size, self.config.max_payload_bytes):
                    record = replace(
                        record,
                        features=None,
                        reason=PAYLOAD_TOO_LARGE,
                        detail=f"a request with this record alone exceeds "
                        f"MAX_PAYLOAD_BYTES ({self.config.max_payload_bytes})",
                    )
            records.append(record)
        return records

    def _score(self, instances: list[list[float]]) -> tuple[list[Any], str, str | None]:
        result = self.score(instances)
        self.summary.invoke_calls += 1
        if not isinstance(result, tuple) or len(result) < 2:
            raise ScoringError("a scorer must return (predictions, model_version[, variant])")
        predictions, version = result[0], result[1]
        variant = result[2] if len(result) > 2 else None
        if not isinstance(predictions, list) or len(predictions) != len(instances):
            count = len(predictions) if isinstance(predictions, list) else "no"
            raise ScoringError(f"got {count} predictions for {len(instances)} instances")
        if not isinstance(version, str) or not version:
            raise ScoringError(f"invalid model version {version!r}")
        return predictions, version, variant

    def _process_chunk(
        self, key: str, number: int, chunk_id: str, slug: str, records: list[Record]
    ) -> None:
        config, run = self.config, self.run
        good = [r for r in records if r.ok]
        bad = [r for r in records if not r.ok]
        sizes = [instance_size(r.features or ()) for r in good]
        expires = run.started_ms // 1000 + config.prediction_ttl_days * _DAY_SECONDS
        calls_before = self.summary.invoke_calls

        lines_by_version: dict[str, list[str]] = {}
        items: list[dict[str, Any]] = []
        for start, end in pack_ranges(sizes, config.max_payload_bytes):
            pack = good[start:end]
            predictions, version, variant = self._score([list(r.features or ()) for r in pack])
            for record, raw_prediction in zip(pack, predictions, strict=True):
                pid = prediction_id(config.run_id, chunk_id, record.index)
                prediction = json_safe(raw_prediction)
                line = {
                    "id": record.record_id,
                    "predictionId": pid,
                    "features": list(record.features or ()),
                    "prediction": prediction,
                    "modelVersion": version,
                    "timestamp": run.started_ms,
                }
                lines_by_version.setdefault(version, []).append(
                    json.dumps(line, separators=(",", ":"), allow_nan=False)
                )
                item: dict[str, Any] = {
                    "predictionId": pid,
                    "timestamp": run.started_ms,
                    "modelVersion": version,
                    "prediction": to_dynamo(prediction),
                    "expirationTime": expires,
                    "source": "batch",
                    "runId": config.run_id,
                }
                if variant:
                    item["invokedVariant"] = variant
                if record.record_id is not None:
                    item["recordId"] = str(record.record_id)
                items.append({k: _SERIALIZER.serialize(v) for k, v in item.items()})

        outputs = []
        for version in sorted(lines_by_version):
            out_key = (
                f"predictions/dt={run.run_date}/model_version={safe_name(version)}"
                f"/run={config.run_id}/{slug}.jsonl"
            )
            self._put(out_key, "\n".join(lines_by_version[version]) + "\n", "application/x-ndjson")
            outputs.append(out_key)

        errors_key = None
        if bad:
            errors_key = f"errors/run={config.run_id}/shard={config.shard_index}/{slug}.jsonl"
            error_lines = [
                json.dumps(
                    {
                        "chunkId": chunk_id,
                        "key": key,
                        "record": r.index,
                        "id": r.record_id,
                        "reason": r.reason,
                        "detail": r.detail,
                        "raw": r.raw,
                    },
                    separators=(",", ":"),
                )
                for r in bad
            ]
            self._put(errors_key, "\n".join(error_lines) + "\n", "application/x-ndjson")

        batch_write_all(self.dynamodb, config.table_name, items, sleep=self.sleep)

        marker = {
            "chunkId": chunk_id,
            "key": key,
            "chunk": number,
            "shard": config.shard_index,
            "records": len(records),
            "scored": len(good),
            "bad": len(bad),
            "invokeCalls": self.summary.invoke_calls - calls_before,
            "outputs": outputs,
            "errors": errors_key,
            "completedAt": int(self.clock() * 1000),
        }
        self._put(done_marker_prefix(config.run_id) + slug, json.dumps(marker), "application/json")
        self.summary.scored += len(good)
        self.summary.chunks_processed += 1
        _log(
            logging.INFO,
            "chunk done",
            chunkId=chunk_id,
            records=len(records),
            scored=len(good),
            bad=len(bad),
        )

    def _put(self, key: str, body: str, content_type: str) -> None:
        self.s3.put_object(
            Bucket=self.config.data_bucket,
            Key=key,
            Body=body.encode("utf-8"),
            ContentType=content_type,
        )


def run_job(
    config: JobConfig,
    *,
    s3: Any,
    dynamodb: Any,
    score: Scorer,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
) -> JobSummary:
    """Run this shard of the job and return its summary (also logged as one JSON line).

    ``records`` and ``bad`` cover every chunk of the shard, including chunks skipped because an
    earlier attempt finished them (their records are re-parsed locally), so the bad-record
    verdict is the same on every attempt. ``scored``, ``chunksProcessed`` and ``invokeCalls``
    count the work done by this attempt.
    """
    summary = JobSummary(config.run_id, config.shard_index, config.shard_count)
    try:
        _Job(config, s3, dynamodb, score, sleep, clock, summary).execute()
        summary.bad_limit = config.bad_record_limit(summary.records)
        summary.status = "bad_records_exceeded" if summary.bad_records_exceeded else "ok"
    except Exception:
        summary.status = "failed"
        raise
    finally:
        _log(logging.INFO, "summary", **summary.as_fields())
    return summary
