"""Input parsing: objects become lines, lines become records, records are grouped in chunks.

A record is one non-blank line (for CSV, one non-blank line after the header). A chunk is
``chunk_size`` consecutive records of one object, identified as ``<object key>#<chunk number>``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

_FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv"}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")

# Reasons a record is rejected.
UNPARSEABLE = "unparseable"
INVALID_ID = "invalid_id"
MISSING_FEATURES = "missing_features"
NON_NUMERIC = "non_numeric_feature"
NON_FINITE = "non_finite_feature"
FEATURE_COUNT = "feature_count_mismatch"
COLUMN_COUNT = "column_count_mismatch"
PAYLOAD_TOO_LARGE = "payload_too_large"


@dataclass(frozen=True)
class Line:
    text: str
    decodable: bool = True


@dataclass(frozen=True)
class Record:
    """One input record: parsed features, or the reason it was rejected."""

    index: int
    raw: str
    record_id: str | int | None = None
    features: tuple[float, ...] | None = None
    reason: str | None = None
    detail: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None


def input_format(key: str) -> str | None:
    """``"jsonl"``, ``"csv"`` or ``None`` (not an input object) for an S3 key."""
    lowered = key.lower()
    for suffix, fmt in _FORMATS.items():
        if lowered.endswith(suffix):
            return fmt
    return None


def make_chunk_id(key: str, number: int) -> str:
    return f"{key}#{number}"


def shard_of(chunk_id: str, shard_count: int) -> int:
    """Shard owning a chunk: a stable hash, identical across processes and Python versions."""
    digest = hashlib.sha256(chunk_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % shard_count


def safe_name(value: str) -> str:
    """``value`` with every run of characters unsafe in an S3 key segment replaced by ``_``."""
    return _UNSAFE.sub("_", value).strip("_") or "_"


def chunk_slug(chunk_id: str) -> str:
    """A file name for a chunk: readable, free of ``/``, and distinct for distinct chunk ids."""
    readable = _UNSAFE.sub("_", chunk_id)[-120:].strip("_.")
    digest = hashlib.sha256(chunk_id.encode("utf-8")).hexdigest()[:16]
    return f"{readable}-{digest}" if readable else digest


def iter_lines(stream: IO[bytes]) -> Iterator[Line]:
    """Non-blank lines of a binary stream, decoded as UTF-8 (a leading BOM is dropped)."""
    first = True
    for raw in stream:
        if first:
            raw = raw.removeprefix(b"\xef\xbb\xbf")
            first = False
        raw = raw.rstrip(b"\r\n")
        if not raw.strip():
            continue
        try:
            yield Line(raw.decode("utf-8"))
        except UnicodeDecodeError:
            yield Line(raw.decode("utf-8", errors="replace"), decodable=False)


def chunked(lines: Iterator[Line], size: int) -> Iterator[list[Line]]:
    batch: list[Line] = []
    for line in lines:
        batch.append(line)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class ObjectParser:
    """Parses the records of one object, enforcing one feature count per object.

    The expected feature count is that of the object's first good record, so records must be
    parsed in order until it is known.
    """

    def __init__(self, fmt: str, header: list[str] | None = None) -> None:
        self.fmt = fmt
        self.expected: int | None = None
        self._columns: list[str] = []
        self._id_column: int | None = None
        if fmt == "csv":
            self._columns = [name.strip() for name in header or []]
            if "id" in self._columns:
                self._id_column = self._columns.index("id")

    @classmethod
    def open(cls, fmt: str, lines: Iterator[Line]) -> ObjectParser | None:
        """A parser for an object; consumes a CSV header from ``lines``. ``None`` if no header."""
        if fmt != "csv":
            return cls(fmt)
        header = next(lines, None)
        if header is None:
            return None
        try:
            columns = next(csv.reader([header.text]))
        except csv.Error:
            columns = []
        return cls(fmt, columns)

    def parse(self, index: int, line: Line) -> Record:
        if not line.decodable:
            return Record(index, line.text, reason=UNPARSEABLE, detail="not valid UTF-8")
        if self.fmt == "csv":
            record = self._parse_csv(index, line.text)
        else:
            record = self._parse_json(index, line.text)
        if record.ok and record.features is not None:
            if self.expected is None:
                self.expected = len(record.features)
            elif len(record.features) != self.expected:
                return Record(
                    index,
                    line.text,
                    record_id=record.record_id,
                    reason=FEATURE_COUNT,
                    detail=f"expected {self.expected} features, got {len(record.features)}",
                )
        return record

    def _parse_json(self, index: int, text: str) -> Record:
        try:
            obj: Any = json.loads(text)
        except (ValueError, RecursionError) as exc:
            return Record(index, text, reason=UNPARSEABLE, detail=f"invalid JSON: {exc}")
        if not isinstance(obj, dict):
            return Record(index, text, reason=UNPARSEABLE, detail="not a JSON object")
        record_id = obj.get("id")
        if record_id is not None and (
            isinstance(record_id, bool) or not isinstance(record_id, str | int)
        ):
            return Record(index, text, reason=INVALID_ID, detail="id must be a string or integer")
        raw_features = obj.get("features")
        if not isinstance(raw_features, list) or not raw_features:
            return Record(
                index,
                text,
                record_id=record_id,
                reason=MISSING_FEATURES,
                detail="features must be a non-empty list",
            )
        cells = ((f"feature {p}", v, _json_number(v)) for p, v in enumerate(raw_features))
        return _with_features(index, text, record_id, cells)

    def _parse_csv(self, index: int, text: str) -> Record:
        try:
            row = next(csv.reader([text]))
        except (csv.Error, StopIteration) as exc:
            return Record(index, text, reason=UNPARSEABLE, detail=f"invalid CSV row: {exc}")
        if len(row) != len(self._columns):
            return Record(
                index,
                text,
                reason=COLUMN_COUNT,
                detail=f"expected {len(self._columns)} columns, got {len(row)}",
            )
        record_id: str | None = None
        if self._id_column is not None:
            record_id = row[self._id_column].strip() or None
        cells = (
            (f"column {name!r}", cell, _csv_number(cell))
            for position, (name, cell) in enumerate(zip(self._columns, row, strict=True))
            if position != self._id_column
        )
        return _with_features(index, text, record_id, cells)


def _json_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _csv_number(cell: str) -> float | None:
    value = cell.strip()
    try:
        return None if "_" in value else float(value)
    except ValueError:
        return None


def _with_features(
    index: int,
    text: str,
    record_id: str | int | None,
    cells: Iterable[tuple[str, Any, float | None]],
) -> Record:
    """The record of these ``(where, raw value, number or None)`` features: rejected at the
    first that is not a number or not finite, or when there are none."""
    features: list[float] = []
    for where, raw, number in cells:
        if number is None or not math.isfinite(number):
            reason = NON_NUMERIC if number is None else NON_FINITE
            return Record(
                index, text, record_id=record_id, reason=reason, detail=f"{where}: {raw!r}"
            )
        features.append(number)
    if not features:
        return Record(
            index, text, record_id=record_id, reason=MISSING_FEATURES, detail="no feature columns"
        )
    return Record(index, text, record_id=record_id, features=tuple(features))
