"""The real command in a fresh process: what it imports, and how fast it says what is wrong."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.stub_endpoint import StubEndpoint, closed_port

# Runs the CLI, then writes the names of every module the process imported and how long the
# command ran (from the CLI's import to its exit). Modules named in NOT_INSTALLED cannot be
# imported, as if they were not installed; those in PRELOAD are imported before the clock starts.
WITH_MODULES = """
import importlib, json, os, sys, time
for name in os.environ.get("NOT_INSTALLED", "").split():
    sys.modules[name] = None
for name in os.environ.get("PRELOAD", "").split():
    importlib.import_module(name)
started = time.monotonic()
from mlpipe.cli.app import run
code = run(sys.argv[1:])
with open(os.environ["MODULES_OUT"], "w") as out:
    json.dump({"modules": sorted(sys.modules), "seconds": time.monotonic() - started}, out)
sys.exit(code)
"""
# The embedded AWS's and the example models' heavy imports.
HEAVY = ("moto", "flask", "werkzeug", "sklearn", "mlpipe.local.moto_ext")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """No credentials from this machine; fake ones where a test wants them."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {
        **clean,
        "HOME": str(tmp_path),
        "MLPIPE_HOME": str(tmp_path / "mlpipe-home"),
        "MODULES_OUT": str(tmp_path / "modules.json"),
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",  # no instance-metadata lookup for credentials
    }


def with_credentials(env: dict[str, str]) -> dict[str, str]:
    return {**env, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


class Run:
    def __init__(self, proc: subprocess.CompletedProcess[str], report: dict[str, Any]) -> None:
        self.returncode, self.stdout, self.stderr = proc.returncode, proc.stdout, proc.stderr
        self.modules: set[str] = set(report["modules"])
        self.seconds: float = report["seconds"]


def cli(env: dict[str, str], *args: str) -> Run:
    proc = subprocess.run(
        [sys.executable, "-c", WITH_MODULES, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return Run(proc, json.loads(Path(env["MODULES_OUT"]).read_text()))


def loaded(modules: set[str], *names: str) -> list[str]:
    """The modules that are one of `names` or inside one of them."""
    return sorted(m for m in modules if any(m == n or m.startswith(f"{n}.") for n in names))


def heavy(modules: set[str]) -> list[str]:
    return loaded(modules, *HEAVY)


def test_help_loads_neither_aws_nor_the_spec_models(env: dict[str, str]) -> None:
    run = cli(env, "--help")
    assert run.returncode == 0 and "validate" in run.stdout
    assert heavy(run.modules) == []
    assert loaded(run.modules, "boto3", "pydantic") == []


def test_validate_loads_no_aws_client(env: dict[str, str]) -> None:
    run = cli(env, "validate")
    assert run.returncode == 0, run.stderr
    assert "valid" in run.stdout
    assert heavy(run.modules) == []
    assert loaded(run.modules, "boto3") == []


def test_plan_against_aws_loads_no_embedded_aws(env: dict[str, str]) -> None:
    with StubEndpoint() as stub:
        run = cli(with_credentials(env), "--endpoint-url", stub.url, "plan")
    # The stub answers GetCallerIdentity, then 403 to the planner's first read.
    assert run.returncode == 1
    assert run.stderr.startswith("AWS error: ") and stub.requests >= 2
    assert "mlpipe.resources" in run.modules
    assert heavy(run.modules) == []


def test_unreachable_endpoint_fails_in_seconds(env: dict[str, str]) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    # Imports done first: from the command's start to its error, what retries would lengthen.
    preload = {"PRELOAD": "boto3 mlpipe.spec mlpipe.pipeline"}
    run = cli({**with_credentials(env), **preload}, "--endpoint-url", url, "plan")
    assert run.returncode == 1
    assert run.stderr.splitlines() == [f"Error: cannot reach {url}/: Connection refused"]
    assert run.seconds < 5  # 10-30 s when botocore retried it


def test_no_credentials_is_one_line_and_starts_nothing(env: dict[str, str]) -> None:
    run = cli(env, "plan")
    assert run.returncode == 1
    [line] = run.stderr.splitlines()
    for way in ("--profile", "AWS_ACCESS_KEY_ID", "--local"):
        assert way in line
    assert not (Path(env["MLPIPE_HOME"]) / "local").exists()  # no embedded AWS started
    assert heavy(run.modules) == []


@pytest.mark.parametrize("command", [["--local", "plan"], ["local", "up"], ["demo"]])
def test_the_embedded_aws_not_installed_says_how_to_install_it(
    env: dict[str, str], command: list[str]
) -> None:
    run = cli({**env, "NOT_INSTALLED": "moto"}, *command)
    assert run.returncode == 1
    assert run.stderr.splitlines() == [
        "Error: the embedded AWS is not installed (moto missing): pip install 'mlpipe[local]'"
    ]
    assert not (Path(env["MLPIPE_HOME"]) / "local").exists()
