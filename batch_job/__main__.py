"""Entry point: ``python -m batch_job``. Exit codes: 0 ok, 1 failed, 2 bad configuration."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config

from .config import ConfigError, JobConfig, load_config
from .job import run_job
from .scoring import EndpointScorer, Scorer, load_version_map

logger = logging.getLogger("batch_job")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_CONFIG = 2

_AWS_CONFIG = Config(retries={"mode": "standard", "max_attempts": 10})
_RUNTIME_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, read_timeout=75)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; fields passed as ``extra={"fields": {...}}`` are merged in."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            payload.update(fields)
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def configure_logging() -> None:
    """Send the job's logs to stderr as JSON lines (idempotent)."""
    for handler in logger.handlers:
        if isinstance(handler, logging.StreamHandler) and isinstance(
            handler.formatter, JsonFormatter
        ):
            handler.setStream(sys.stderr)
            return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def endpoint_scorer(config: JobConfig, session: boto3.Session) -> EndpointScorer:
    """The SageMaker-endpoint-backed scorer for ``config``."""
    if not config.endpoint_name:
        raise ConfigError("ENDPOINT_NAME", "is required but not set")
    if not config.active_version_param:
        raise ConfigError("ACTIVE_VERSION_PARAM", "is required but not set")
    versions = load_version_map(
        session.client("ssm", config=_AWS_CONFIG),
        config.active_version_param,
        config.deployment_param,
    )
    runtime = session.client("sagemaker-runtime", config=_RUNTIME_CONFIG)
    return EndpointScorer(runtime, config.endpoint_name, versions)


def main(
    env: Mapping[str, str] | None = None,
    *,
    session: boto3.Session | None = None,
    scorer: Scorer | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
) -> int:
    """Run the job; return the process exit code."""
    configure_logging()
    try:
        config = load_config(os.environ if env is None else env)
        session = session or boto3.Session()
        score = scorer or endpoint_scorer(config, session)
    except ConfigError as exc:
        logger.error(
            f"bad configuration: {exc}", extra={"fields": {"variable": exc.var, "exitCode": 2}}
        )
        return EXIT_BAD_CONFIG
    except Exception:
        logger.exception("job failed during setup")
        return EXIT_FAILED
    try:
        summary = run_job(
            config,
            s3=session.client("s3", config=_AWS_CONFIG),
            dynamodb=session.client("dynamodb", config=_AWS_CONFIG),
            score=score,
            sleep=sleep,
            clock=clock,
        )
    except Exception:
        logger.exception("job failed")
        return EXIT_FAILED
    if summary.bad_records_exceeded:
        logger.error(
            f"bad records exceed MAX_BAD_RECORDS: {summary.bad} bad of {summary.records} "
            f"records, limit {summary.bad_limit:g}",
            extra={"fields": {"bad": summary.bad, "records": summary.records}},
        )
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
