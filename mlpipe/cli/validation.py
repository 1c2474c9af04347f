"""Checks of the command line's options, arguments and input files, made before any AWS call.

Each refusal is a UsageError (exit 2) of one line naming the option (or file and line) and what
would be accepted.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mlpipe.cli.output import err
from mlpipe.core.errors import UsageError

# The fields of one stream record, as the stream Lambda reads them.
RECORD_FIELDS = ("features", "requestId")
MAX_REQUEST_ID = 256
# `stream put` reads at most this much: Kinesis takes 1 MiB a record, 500 records a call.
MAX_RECORDS_FILE_BYTES = 100 * 1024 * 1024
MAX_RECORD_BYTES = 1024 * 1024


def endpoint_url(value: str, source: str = "--endpoint-url") -> str:
    """An http(s) URL with a host, as botocore accepts for `endpoint_url`."""
    try:
        parts = urlsplit(value)
        _ = parts.port  # ValueError for a port out of range or not a number
    except ValueError as exc:
        raise UsageError(f"{source} {value!r}: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname or value != value.strip():
        raise UsageError(
            f"{source} {value!r}: not an endpoint URL like https://host or http://127.0.0.1:4566"
        )
    return value


@functools.cache
def _partitions() -> list[tuple[str, str, frozenset[str]]]:
    """(partition, region pattern, known regions) from botocore's endpoints data (no call)."""
    import botocore.session

    data = botocore.session.get_session().get_data("endpoints")
    return [
        (p["partition"], p["regionRegex"], frozenset(p.get("regions", {})))
        for p in data["partitions"]
    ]


def region(value: str, source: str = "--region", *, local: bool = False) -> str:
    """A region of one of AWS's partitions. One that only follows a partition's naming pattern
    (newer than this botocore) is accepted with a warning, except by the embedded AWS, which
    knows only the regions botocore lists."""
    known = sorted(r for _, _, regions in _partitions() for r in regions)
    if any(value in regions for _, _, regions in _partitions()):
        return value
    if not local and any(re.fullmatch(pattern, value) for _, pattern, _ in _partitions()):
        err(
            f"Warning: {source} {value!r} is not a region this botocore knows; if it is new, "
            "upgrade boto3 (continuing)."
        )
        return value
    examples = ", ".join(r for r in known if r.startswith(("us-east", "eu-west")))
    raise UsageError(f"{source} {value!r}: not an AWS region name (e.g. {examples})")


def check_global(
    endpoint: str | None, region_name: str | None, local: bool, profile: str | None
) -> None:
    """The global options, and the environment variables standing in for them."""
    if endpoint is not None:
        endpoint_url(endpoint)
    elif os.environ.get("AWS_ENDPOINT_URL"):
        endpoint_url(os.environ["AWS_ENDPOINT_URL"], "AWS_ENDPOINT_URL")
    if region_name is not None:
        region(region_name, local=local)
    elif profile is None:
        for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
            if os.environ.get(name):
                region(os.environ[name], name, local=local)
                break
    if profile is not None and (not profile.strip() or any(c in profile for c in "[]\n")):
        raise UsageError(f"--profile {profile!r}: not a profile name")


def positive_seconds(value: float | None, option: str) -> float | None:
    """None, or a finite number of seconds above zero."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise UsageError(f"{option} {value!r}: give a number of seconds above 0")
    return value


def features(text: str, option: str = "--features", count: int | None = None) -> list[float]:
    """Comma-separated finite numbers, `count` of them when the spec says how many."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError as exc:
        raise UsageError(
            f"{option}: {text[:80]!r} is not a comma-separated list of numbers"
        ) from exc
    for index, value in enumerate(values):
        if not math.isfinite(value):
            raise UsageError(f"{option}: value {index + 1} ({value}) is not a finite number")
    _check_count(values, count, option)
    return values


def _check_count(values: list[Any], count: int | None, where: str) -> None:
    if count is not None and len(values) != count:
        raise UsageError(
            f"{where}: {len(values)} features, the model takes {count} (lambdas.feature_count)"
        )


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def record(line: str, where: str, count: int | None = None) -> dict[str, Any]:
    """One JSON Lines stream record: {"features": [finite numbers], "requestId": str?}."""
    if len(line.encode()) > MAX_RECORD_BYTES:
        raise UsageError(f"{where}: a record is larger than Kinesis's 1 MiB")
    try:
        value = json.loads(line, parse_constant=_no_constant)
    except RecursionError as exc:
        raise UsageError(f"{where}: nested too deeply") from exc
    except ValueError as exc:
        raise UsageError(f"{where}: not JSON: {exc}") from exc
    if not isinstance(value, dict):
        kind = type(value).__name__
        raise UsageError(f'{where}: expected an object {{"features": [...]}}, got a JSON {kind}')
    unknown = sorted(set(value) - set(RECORD_FIELDS))
    if unknown:
        raise UsageError(
            f"{where}: unknown field(s) {', '.join(unknown)}; records take features, requestId"
        )
    feats = value.get("features")
    if not isinstance(feats, list) or not feats:
        raise UsageError(f"{where}: 'features' must be a non-empty list of numbers")
    for index, item in enumerate(feats):
        if isinstance(item, bool) or not isinstance(item, int | float):
            raise UsageError(f"{where}: features[{index}] is not a number")
        if not math.isfinite(item) or abs(item) >= 1e126:
            raise UsageError(f"{where}: features[{index}] is not a finite number DynamoDB stores")
    _check_count(feats, count, where)
    request_id = value.get("requestId")
    if request_id is not None and (
        not isinstance(request_id, str) or not 0 < len(request_id) <= MAX_REQUEST_ID
    ):
        raise UsageError(
            f"{where}: 'requestId' must be a string of 1 to {MAX_REQUEST_ID} characters"
        )
    return value


def records_file(path: Path, count: int | None = None) -> list[dict[str, Any]]:
    """Every record of a JSON Lines file, checked one by one; the first bad one is named by
    its line number."""
    try:
        size = path.stat().st_size
        if size > MAX_RECORDS_FILE_BYTES:
            raise UsageError(f"{path}: {size} bytes; send at most {MAX_RECORDS_FILE_BYTES}")
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise UsageError(f"{path}:{line}: not UTF-8 (byte {exc.start})") from exc
    records = [
        record(line, f"{path}:{number}", count)
        for number, line in enumerate(text.splitlines(), 1)
        if line.strip()
    ]
    if not records:
        raise UsageError(f"{path}: no records")
    return records


def existing_path(path: Path, what: str) -> Path:
    if not path.exists():
        raise UsageError(f"{what} {path}: no such file or directory")
    return path
