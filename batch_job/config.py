"""Job configuration, read from environment variables.

Required: ``RUN_ID``, ``DATA_BUCKET``, ``TABLE_NAME``; scoring through the endpoint also needs
``ENDPOINT_NAME`` and ``ACTIVE_VERSION_PARAM``. Optional, with defaults:

=======================  ============================================================
``DEPLOYMENT_PARAM``     SSM parameter with the variant -> version deployment state
``INPUT_PREFIX``         ``input/<RUN_ID>/``
``SHARD_INDEX``          ``0`` (``0 <= SHARD_INDEX < SHARD_COUNT``)
``SHARD_COUNT``          ``1``
``CHUNK_SIZE``           ``500`` records
``MAX_PAYLOAD_BYTES``    ``5000000``, the largest InvokeEndpoint body
``MAX_BAD_RECORDS``      ``0.05``: a count if >= 1, else a fraction of the shard's records
``PREDICTION_TTL_DAYS``  ``30``
``RUN_DATE``             the date recorded when the run first started (UTC), YYYY-MM-DD
=======================  ============================================================

Empty values count as unset. Every problem is reported as a :class:`ConfigError` naming the
variable at fault.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

_RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class ConfigError(ValueError):
    """An environment variable is missing or invalid."""

    def __init__(self, var: str, problem: str) -> None:
        super().__init__(f"{var} {problem}")
        self.var = var


@dataclass(frozen=True)
class JobConfig:
    data_bucket: str
    table_name: str
    run_id: str
    input_prefix: str
    endpoint_name: str | None = None
    active_version_param: str | None = None
    deployment_param: str | None = None
    shard_index: int = 0
    shard_count: int = 1
    chunk_size: int = 500
    max_payload_bytes: int = 5_000_000
    max_bad_records: float = 0.05
    prediction_ttl_days: int = 30
    run_date: str | None = None

    def bad_record_limit(self, records: int) -> float:
        """Largest tolerated number of bad records among ``records`` records."""
        if self.max_bad_records >= 1:
            return self.max_bad_records
        return self.max_bad_records * records


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _required(env: Mapping[str, str], name: str) -> str:
    value = _get(env, name)
    if value is None:
        raise ConfigError(name, "is required but not set")
    return value


def _int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(name, f"must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(name, f"must be >= {minimum}, got {value}")
    return value


def _bad_records(env: Mapping[str, str]) -> float:
    name = "MAX_BAD_RECORDS"
    raw = _get(env, name)
    if raw is None:
        return 0.05
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(name, f"must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(name, f"must be a finite number >= 0, got {raw!r}")
    if value >= 1 and not value.is_integer():
        raise ConfigError(name, f"must be a whole count when >= 1, got {raw!r}")
    return value


def _run_date(env: Mapping[str, str]) -> str | None:
    raw = _get(env, "RUN_DATE")
    if raw is None:
        return None
    try:
        if not _DATE_RE.match(raw):
            raise ValueError
        date.fromisoformat(raw)
    except ValueError:
        raise ConfigError("RUN_DATE", f"must be a date as YYYY-MM-DD, got {raw!r}") from None
    return raw


def load_config(env: Mapping[str, str]) -> JobConfig:
    """Build the job configuration from ``env``; raise :class:`ConfigError` on bad input."""
    run_id = _required(env, "RUN_ID")
    if not _RUN_ID_RE.match(run_id):
        raise ConfigError(
            "RUN_ID",
            f"must be 1-128 characters of letters, digits, '.', '_', ':' or '-', got {run_id!r}",
        )
    shard_count = _int(env, "SHARD_COUNT", 1, minimum=1)
    shard_index = _int(env, "SHARD_INDEX", 0, minimum=0)
    if shard_index >= shard_count:
        raise ConfigError(
            "SHARD_INDEX", f"must be < SHARD_COUNT ({shard_count}), got {shard_index}"
        )
    return JobConfig(
        data_bucket=_required(env, "DATA_BUCKET"),
        table_name=_required(env, "TABLE_NAME"),
        run_id=run_id,
        input_prefix=_get(env, "INPUT_PREFIX") or f"input/{run_id}/",
        endpoint_name=_get(env, "ENDPOINT_NAME"),
        active_version_param=_get(env, "ACTIVE_VERSION_PARAM"),
        deployment_param=_get(env, "DEPLOYMENT_PARAM"),
        shard_index=shard_index,
        shard_count=shard_count,
        chunk_size=_int(env, "CHUNK_SIZE", 500, minimum=1),
        max_payload_bytes=_int(env, "MAX_PAYLOAD_BYTES", 5_000_000, minimum=1),
        max_bad_records=_bad_records(env),
        prediction_ttl_days=_int(env, "PREDICTION_TTL_DAYS", 30, minimum=1),
        run_date=_run_date(env),
    )
