"""The bad-input corpus of command lines and spec files (tests/corpus/cli.yaml, spec.yaml), run
in-process: each exits with its status and one line naming what is wrong, with no traceback
and no AWS call (a tripwire endpoint counts any request, and no AWS client may be made)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlpipe.cli import validation
from mlpipe.cli.app import run
from mlpipe.core import clients
from mlpipe.core.errors import UsageError
from tests.conftest import ROOT, SPEC_PATH
from tests.corpus.corpus import cases


class Tripwire:
    """An HTTP endpoint that records every request it gets (none is expected)."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        calls = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                calls.append(self.path)
                self.send_response(500)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_PUT = do_DELETE = do_POST

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def tripwire() -> Iterator[Tripwire]:
    wire = Tripwire()
    yield wire
    wire.close()


@pytest.fixture
def no_aws(
    tripwire: Tripwire, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[list[str]]:
    """Every AWS call would go to the tripwire; making an AWS client is recorded too."""
    for name in ("AWS_PROFILE", "AWS_REGION", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", tripwire.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("MLPIPE_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(ROOT)
    made: list[str] = []
    monkeypatch.setattr(clients.Aws, "__init__", lambda *a, **k: made.append("Aws"))
    before = len(tripwire.requests)
    yield made
    assert tripwire.requests[before:] == [], "an AWS call was made"
    assert made == [], "an AWS client was made"


def _write(path: Path, content: Any) -> None:
    if isinstance(content, dict) and "deep" in content:
        path.write_text("[" * content["deep"] + "]" * content["deep"] + "\n")
    elif isinstance(content, dict) and "latin1" in content:
        path.write_bytes(content["latin1"].encode("latin-1"))
    else:
        path.write_text(content, encoding="utf-8")


def _check_output(captured: Any, case: dict[str, Any]) -> None:
    assert "Traceback" not in captured.err + captured.out
    assert captured.out == ""
    if case.get("usage"):  # typer's own usage errors: its usage text, then the error
        assert case["message"] in captured.err
        return
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, lines
    assert case["message"] in lines[0]


@pytest.mark.parametrize("case", cases("cli"))
def test_a_bad_command_line_gets_one_clear_line(
    case: dict[str, Any],
    no_aws: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in (case.get("env") or {}).items():
        monkeypatch.setenv(name, value)
    features30 = ",".join(["0.5"] * 30)
    paths = []
    for name, content in (case.get("files") or {}).items():
        paths.append(tmp_path / name)
        if isinstance(content, str):
            content = content.replace("{features30}", features30)
        _write(paths[-1], content)
    argv = [
        arg.replace("{file}", str(paths[0]) if paths else "").replace("{features30}", features30)
        for arg in case["argv"]
    ]
    assert run(argv) == case["exit"]
    _check_output(capsys.readouterr(), case)


def _spec_file(case: dict[str, Any], path: Path) -> None:
    text = SPEC_PATH.read_text(encoding="utf-8")
    if "set" in case:
        data = yaml.safe_load(text)
        for dotted, value in case["set"].items():
            *parents, last = [p for p in dotted.replace("]", "").replace("[", ".").split(".")]
            node = data
            for part in parents:
                node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
            node[int(last) if last.isdigit() else last] = value
        text = yaml.safe_dump(data, sort_keys=False)
    if "replace" in case:
        old, new = case["replace"]
        assert old in text
        text = text.replace(old, new, 1)
    text += case.get("append", "")
    if "text" in case:
        text = case["text"]
    if "deep" in case:
        text = "tags: " + "[" * case["deep"] + "]" * case["deep"] + "\n"
    if "size" in case:
        text += "#" * (case["size"] - len(text.encode()) - 1) + "\n"
    if "latin1" in case:
        path.write_bytes(case["latin1"].encode("latin-1"))
    else:
        path.write_text(text, encoding="utf-8")


@pytest.mark.parametrize("case", cases("spec"))
def test_a_bad_spec_is_refused_by_plan_with_its_file_and_key(
    case: dict[str, Any], no_aws: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "pipeline.yaml"
    _spec_file(case, path)
    assert run(["--spec", str(path), "plan"]) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and captured.out == ""
    lines = captured.err.strip().splitlines()
    assert all(line.startswith(f"{path}: ") for line in lines), lines
    assert any(case["message"] in line for line in lines), lines


def test_an_unforeseen_error_prints_one_line_and_where_its_trace_is(
    no_aws: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*_args: Any) -> None:
        raise RuntimeError("a bug\nover two lines")

    monkeypatch.setattr("mlpipe.spec.load_spec", broken)
    assert run(["--spec", str(SPEC_PATH), "plan"]) == 1
    captured = capsys.readouterr()
    [line] = captured.err.strip().splitlines()
    assert line.startswith("Error: unexpected RuntimeError: a bug over two lines (full trace in ")
    trace = Path(line.rsplit("full trace in ", 1)[1].rstrip(")"))
    assert trace.parent.parent.name == "home"  # under MLPIPE_HOME
    assert "Traceback" in trace.read_text() and "a bug" in trace.read_text()
    assert "Traceback" not in captured.err


def test_a_region_newer_than_botocore_is_accepted_with_a_warning(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert validation.region("us-west-9") == "us-west-9"
    assert validation.region("us-east-1") == "us-east-1"
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "Warning: --region 'us-west-9' is not a region this botocore knows; if it is new, "
        "upgrade boto3 (continuing)."
    ]
    with pytest.raises(UsageError, match="not an AWS region name"):
        validation.region("us-west-9", local=True)  # the embedded AWS knows botocore's only


def test_the_corpus_covers_every_kind() -> None:
    sizes = {kind: len(cases(kind)) for kind in ("cli", "spec", "api", "stream")}
    assert min(sizes.values()) >= 10, json.dumps(sizes)
