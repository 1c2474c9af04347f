"""Fixtures for running the real `mlpipe` command against the embedded AWS."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import ROOT, WINDOWS


def cli_env(home: Path) -> dict[str, str]:
    """The environment of a `mlpipe` subprocess: no AWS credentials, its own home."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {
        **clean,
        "MLPIPE_HOME": str(home / "home"),
        "HOME": str(home),
        # Endpoints still pass through Creating/Updating, without the real-time wait.
        "MLPIPE_LOCAL_ENDPOINT_DELAY": "0",
        **dict.fromkeys(WINDOWS, "0"),
    }


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return cli_env(tmp_path)


def mlpipe(env: dict[str, str], *args: str, check: int | None = 0) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "mlpipe", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check is not None:
        assert proc.returncode == check, proc.stdout + proc.stderr
    return proc


@contextmanager
def local_up(env: dict[str, str]) -> Iterator[str]:
    """`mlpipe local up --detach` for ``env``'s home; `mlpipe local down` at the end."""
    # Port 0: the embedded AWS and the pipeline's runtimes each take a free port.
    url = mlpipe(env, "local", "up", "--detach", "--port", "0").stdout.strip()
    assert url.startswith("http://127.0.0.1:")
    try:
        yield url
    finally:
        mlpipe(env, "local", "down")


def boto_args(server: str) -> dict[str, str]:
    """What a boto3 client needs to talk to the embedded AWS at ``server``."""
    return {
        "endpoint_url": server,
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
