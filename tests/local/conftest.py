"""Fixtures for the embedded AWS tests: fake credentials, a controllable clock, moto."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from localaws_testing import REGION, TRANSITION_SECONDS, FakeClock
from moto import mock_aws

from mlpipe.local import moto_ext
from mlpipe.local.moto_ext import sagemaker
from tests.conftest import WINDOWS


@pytest.fixture(autouse=True)
def plain_moto_afterwards() -> Iterator[None]:
    """Leave moto as the test found it: the extensions change moto's classes process-wide."""
    installed_before = moto_ext.extensions_installed()
    yield
    if not installed_before:
        moto_ext.uninstall_extensions()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("MLPIPE_HOME", str(tmp_path / "mlpipe-home"))
    for window in WINDOWS:
        monkeypatch.setenv(window, "0")


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(moto_ext, "clock", fake)
    monkeypatch.setattr(sagemaker, "utcnow", fake.utc)
    monkeypatch.setattr(moto_ext, "ENDPOINT_TRANSITION_SECONDS", TRANSITION_SECONDS)
    return fake


@pytest.fixture
def mocked(aws_env: None, clock: FakeClock) -> Iterator[None]:
    moto_ext.install_extensions()
    with mock_aws():
        yield
