"""Shared fixtures: fake credentials, moto (with mlpipe's extensions), a run context."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from moto import mock_aws
from tenacity import wait_none

from mlpipe.core.clients import Aws, AwsTarget
from mlpipe.core.context import Context
from mlpipe.local.moto_ext import install_extensions
from mlpipe.spec import Names, Spec, load_spec

ROOT = Path(__file__).resolve().parents[1]
SPEC_PATH = ROOT / "config" / "pipeline.yaml"
WINDOWS = (
    "MLPIPE_LOCAL_ROLE_WINDOW",
    "MLPIPE_LOCAL_BACKUPS_WINDOW",
    "MLPIPE_LOCAL_ENDPOINT_CONFIG_WINDOW",
)


@pytest.fixture
def fake_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("MLPIPE_HOME", str(tmp_path / "mlpipe-home"))
    for window in WINDOWS:  # the embedded AWS's consistency windows: tests that need one set it
        monkeypatch.setenv(window, "0")


@pytest.fixture
def spec() -> Spec:
    return load_spec(SPEC_PATH)


def make_context(spec: Spec) -> Context:
    aws = Aws(AwsTarget(region="us-east-1"))
    names = Names(spec.pipeline, spec.environment, aws.account, aws.region)
    return Context(aws, spec, names, wait=wait_none(), consistency_timeout=5)


@pytest.fixture
def ctx(fake_credentials: None, spec: Spec) -> Iterator[Context]:
    """A run context on moto's in-process AWS; eventual-consistency retries never sleep."""
    with mock_aws():
        install_extensions()
        yield make_context(spec)
