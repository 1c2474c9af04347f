"""The embedded AWS over real HTTP: in process, in the foreground, and detached."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from localaws_testing import REGION, TRANSITION_SECONDS, FakeClock

from mlpipe.local.server import (
    LocalAws,
    PortInUseError,
    ServerAlreadyRunningError,
    ServerStartError,
    detached_status,
    main,
    serve,
    start_detached,
    state_dir,
    stop_detached,
)
from tests.conftest import SPEC_PATH

pytestmark = pytest.mark.usefixtures("aws_env")

NO_RETRIES = Config(retries={"max_attempts": 1, "mode": "standard"})


def get_json(url: str) -> Any:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.fixture
def local_aws() -> Iterator[LocalAws]:
    with LocalAws(port=0) as aws:
        yield aws
        request = urllib.request.Request(f"{aws.endpoint_url}/moto-api/reset", method="POST")
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=5)


@pytest.fixture
def listener() -> Iterator[int]:
    """A port some other program is listening on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def client(service: str, aws: LocalAws | str) -> Any:
    url = aws if isinstance(aws, str) else aws.endpoint_url
    return boto3.client(service, region_name=REGION, endpoint_url=url, config=NO_RETRIES)


# --- in process ---------------------------------------------------------------------------------


def test_local_aws_answers_boto3_over_http(local_aws: LocalAws):
    assert local_aws.port > 0
    assert local_aws.endpoint_url == f"http://127.0.0.1:{local_aws.port}"
    s3 = client("s3", local_aws)
    s3.create_bucket(Bucket="mlpipe-local-test")
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["mlpipe-local-test"]
    assert get_json(f"{local_aws.endpoint_url}/moto-api/config") == {
        "batch": {"use_docker": False},
        "lambda": {"use_docker": False},
    }


def test_extensions_work_over_http(local_aws: LocalAws, clock: FakeClock):
    sm = client("sagemaker", local_aws)
    role = "arn:aws:iam::123456789012:role/sm"
    for model in ("model-a", "model-b"):
        sm.create_model(ModelName=model, ExecutionRoleArn=role, PrimaryContainer={"Image": "i"})
    for config, model in (("config-1", "model-a"), ("config-2", "model-b")):
        sm.create_endpoint_config(
            EndpointConfigName=config,
            ProductionVariants=[
                {
                    "VariantName": "Main",
                    "ModelName": model,
                    "InitialInstanceCount": 1,
                    "InstanceType": "ml.m5.large",
                    "InitialVariantWeight": 1.0,
                }
            ],
        )
    sm.create_endpoint(EndpointName="ep", EndpointConfigName="config-1")
    assert sm.describe_endpoint(EndpointName="ep")["EndpointStatus"] == "Creating"
    clock.advance(TRANSITION_SECONDS)

    sm.update_endpoint(EndpointName="ep", EndpointConfigName="config-2")
    assert sm.describe_endpoint(EndpointName="ep")["EndpointStatus"] == "Updating"
    clock.advance(TRANSITION_SECONDS)
    after = sm.describe_endpoint(EndpointName="ep")
    assert (after["EndpointStatus"], after["EndpointConfigName"]) == ("InService", "config-2")

    athena = client("athena", local_aws)
    athena.create_work_group(Name="wg")
    athena.update_work_group(WorkGroup="wg", Description="over http")
    assert athena.get_work_group(WorkGroup="wg")["WorkGroup"]["Description"] == "over http"


def test_port_in_use_is_a_clear_error(listener: int):
    with pytest.raises(PortInUseError, match=rf"Port {listener} .*--port"):
        LocalAws(port=listener).start()


def test_serve_returns_on_sigterm_and_restores_handlers():
    seen: list[int] = []
    before = signal.getsignal(signal.SIGTERM)

    def ready(aws: LocalAws, services: object) -> None:
        assert services is None  # no spec: the embedded AWS alone
        seen.append(aws.port)
        assert get_json(f"{aws.endpoint_url}/moto-api/config")["lambda"] == {"use_docker": False}
        os.kill(os.getpid(), signal.SIGTERM)

    serve("127.0.0.1", 0, on_ready=ready)

    assert len(seen) == 1
    assert signal.getsignal(signal.SIGTERM) is before
    with socket.socket() as probe:  # the port was released
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", seen[0]))


def test_serve_with_a_spec_runs_the_pipelines_runtimes_beside_it():
    answers: list[tuple[int, dict[str, Any]]] = []

    def ready(aws: LocalAws, services: Any) -> None:
        assert services.api_url.startswith("http://127.0.0.1:")
        assert services.api_url.endswith("/prod")
        request = urllib.request.Request(f"{services.api_url}/predict", data=b"{}", method="POST")
        try:
            urllib.request.urlopen(request, timeout=10)
        except urllib.error.HTTPError as exc:  # nothing is deployed yet
            answers.append((exc.code, json.loads(exc.read())))
        os.kill(os.getpid(), signal.SIGTERM)

    serve("127.0.0.1", 0, on_ready=ready, spec=SPEC_PATH)

    assert answers == [(403, {"message": "Missing Authentication Token"})]


def test_main_reports_a_port_in_use(listener: int, capsys: pytest.CaptureFixture[str]):
    assert main(["--host", "127.0.0.1", "--port", str(listener)]) == 2
    assert f"Port {listener}" in capsys.readouterr().err


# --- detached -----------------------------------------------------------------------------------


@pytest.fixture
def detached() -> Iterator[None]:
    yield
    stop_detached(grace=5)


@pytest.mark.usefixtures("detached")
def test_detached_server_lifecycle():
    assert detached_status() is None

    info = start_detached("127.0.0.1", 0, timeout=30)

    assert info.port > 0
    assert info.endpoint_url == f"http://127.0.0.1:{info.port}"
    assert detached_status() == info
    recorded = json.loads((state_dir() / "server.json").read_text())
    assert {k: recorded[k] for k in ("pid", "host", "port", "endpoint_url", "started_at")} == {
        "pid": info.pid,
        "host": info.host,
        "port": info.port,
        "endpoint_url": info.endpoint_url,
        "started_at": info.started_at,
    }
    assert (state_dir() / "server.pid").read_text().strip() == str(info.pid)

    s3 = client("s3", info.endpoint_url)
    s3.create_bucket(Bucket="mlpipe-detached")
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["mlpipe-detached"]
    sm = client("sagemaker", info.endpoint_url)
    with pytest.raises(sm.exceptions.ClientError, match="Could not find endpoint"):
        sm.update_endpoint(EndpointName="missing", EndpointConfigName="missing")

    with pytest.raises(ServerAlreadyRunningError, match=info.endpoint_url) as excinfo:
        start_detached("127.0.0.1", 0, timeout=30)
    assert str(state_dir() / "server.pid") in str(excinfo.value)

    assert stop_detached(grace=5) is True
    assert detached_status() is None
    assert not (state_dir() / "server.pid").exists()
    assert not (state_dir() / "server.json").exists()
    with pytest.raises(ConnectionError):
        socket.create_connection(("127.0.0.1", info.port), timeout=2).close()
    assert stop_detached() is False


def test_stale_pid_file_counts_as_not_running():
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    directory = state_dir()
    directory.mkdir(parents=True)
    (directory / "server.pid").write_text(f"{dead.pid}\n")
    (directory / "server.json").write_text(
        json.dumps(
            {
                "pid": dead.pid,
                "host": "127.0.0.1",
                "port": 1,
                "endpoint_url": "http://127.0.0.1:1",
                "started_at": "2030-01-01T00:00:00+00:00",
            }
        )
    )

    assert detached_status() is None
    assert not (directory / "server.pid").exists()
    assert stop_detached() is False


def test_detached_start_failure_reports_the_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho 'cannot start: broken interpreter' >&2\nexit 3\n")
    broken.chmod(broken.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(sys, "executable", str(broken))

    with pytest.raises(ServerStartError, match="exited with code 3") as excinfo:
        start_detached("127.0.0.1", 0, timeout=30)

    assert "cannot start: broken interpreter" in str(excinfo.value)
    assert detached_status() is None
    assert not (state_dir() / "server.pid").exists()


def test_detached_start_on_a_port_in_use(listener: int):
    with pytest.raises(PortInUseError, match=rf"Port {listener} .*--port"):
        start_detached("127.0.0.1", listener, timeout=30)
    assert not (state_dir() / "server.pid").exists()


def test_stop_gives_back_the_moto_settings_it_changed():
    from moto.core.config import default_user_config

    before = {key: dict(default_user_config[key]) for key in ("batch", "lambda")}
    with LocalAws(port=0):
        assert default_user_config["lambda"] == {"use_docker": False}
    assert {key: default_user_config[key] for key in ("batch", "lambda")} == before


def test_reset_empties_every_service():
    with LocalAws(port=0) as aws:
        s3 = boto3.client(
            "s3", endpoint_url=aws.endpoint_url, region_name=REGION, config=NO_RETRIES
        )
        s3.create_bucket(Bucket="left-over")
        aws.reset()
        assert s3.list_buckets()["Buckets"] == []
