"""What the CLI tests share: moto with mlpipe's extensions, and the CLI run in-process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto import mock_aws

from mlpipe.cli.app import run
from mlpipe.local.moto_ext import install_extensions
from tests.conftest import SPEC_PATH


@pytest.fixture
def aws(fake_credentials: None) -> Iterator[None]:
    with mock_aws():
        install_extensions()
        yield


def cli(*args: str) -> int:
    """`mlpipe --spec config/pipeline.yaml --region us-east-1 ARGS`, in this process."""
    return run(["--spec", str(SPEC_PATH), "--region", "us-east-1", *args])
