"""Each function's deployment package is self-contained: its handler imports the shared module
from the package's root and nothing of mlpipe; the local runtime loads it the same way."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from lambdas import COMMON
from mlpipe.local.functions import FunctionConfig, LocalFunction, runtime_environment
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


SHARED_PROBE = """
import inference_common

inference_common.calls = getattr(inference_common, "calls", 0)


def handler(event, context):
    inference_common.calls += 1
    return {"calls": inference_common.calls, "file": inference_common.__file__}
"""


def test_the_local_runtime_gives_each_function_its_own_shared_module(tmp_path: Path) -> None:
    (tmp_path / "handler.py").write_text(SHARED_PROBE)
    before = sys.modules.get("inference_common")
    config = FunctionConfig(
        name="probe",
        arn="arn:aws:lambda:us-east-1:123456789012:function:probe",
        handler="handler.handler",
        timeout=3,
        memory_mb=128,
    )
    env = runtime_environment("http://127.0.0.1:4599", "us-east-1")
    one, two = LocalFunction(config, tmp_path, env), LocalFunction(config, tmp_path, env)

    first = one.invoke({})
    assert first.ok, first.error
    assert Path(first.payload["file"]) == COMMON / "inference_common.py"
    assert one.invoke({}).payload["calls"] == 2
    assert two.invoke({}).payload["calls"] == 1  # a module of its own, as in its own zip
    assert sys.modules.get("inference_common") is before
