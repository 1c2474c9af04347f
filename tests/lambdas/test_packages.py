"""Each function's deployment package is self-contained: its handler imports the shared module
from the package's root and nothing of mlpipe."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from mlpipe.resources.lambdas import PURPOSES, SOURCES, build_zip

PROBE = """
import json, sys
import handler, inference_common
print(json.dumps({
    "common": inference_common.__file__,
    "mlpipe": sorted(m for m in sys.modules if m.split(".")[0] in ("mlpipe", "lambdas")),
}))
"""


@pytest.mark.parametrize("purpose", PURPOSES)
def test_the_handler_imports_from_its_package_alone(purpose: str, tmp_path: Path) -> None:
    package = build_zip(SOURCES / purpose.replace("-", "_"))
    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        archive.extractall(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(ENDPOINT_NAME="e", TABLE_NAME="t", AWS_DEFAULT_REGION="us-east-1")
    probe = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    found = json.loads(probe.stdout.splitlines()[-1])
    assert Path(found["common"]).resolve().parent == tmp_path.resolve()
    assert found["mlpipe"] == []
