"""The CLI in-process on moto: exit codes, output streams, confirmation, error mapping."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
import yaml

from mlpipe.cli.app import run
from mlpipe.core import clients
from tests.cli.conftest import cli
from tests.conftest import SPEC_PATH


def test_validate_without_aws(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("validate") == 0
    assert "valid" in capsys.readouterr().out


def test_spec_errors_exit_2_before_any_aws_call(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = yaml.safe_load(SPEC_PATH.read_text())
    data["endpoint"]["variants"][0]["weight"] = 90
    bad = tmp_path / "pipeline.yaml"
    bad.write_text(yaml.safe_dump(data))

    def no_aws(*_a: object, **_k: object) -> None:
        raise AssertionError("an AWS client was made")

    monkeypatch.setattr(clients.Aws, "__init__", no_aws)
    for command in (["validate"], ["plan"], ["apply", "--yes"]):
        assert run(["--spec", str(bad), *command]) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"{bad}: endpoint.variants: weights must add up to 100, got 110"


def test_plan_apply_status_destroy(aws: None, capsys: pytest.CaptureFixture[str]) -> None:
    # With changes: 2 with --detailed-exitcode (0 without it: the plan after the drift below).
    assert cli("plan", "--json", "--detailed-exitcode") == 2
    plan = json.loads(capsys.readouterr().out)
    total = len(plan["steps"])
    assert plan["mode"] == "apply" and plan["counts"]["create"] == total > 0

    assert cli("apply", "--yes") == 0
    captured = capsys.readouterr()
    # The plan it runs, in the lines `plan` prints.
    assert "+ kms:key" in captured.out and f"Plan: {total} to create" in captured.out
    assert f"{total} done, 0 failed, 0 skipped" in captured.err

    # A second apply changing nothing: tests/e2e, over HTTP.
    assert cli("plan", "--detailed-exitcode") == 0
    assert f"No changes: {total} resources match the spec." in capsys.readouterr().out

    boto3.client("s3").put_bucket_versioning(
        Bucket="ml-pipeline-prod-data-123456789012-us-east-1",
        VersioningConfiguration={"Status": "Suspended"},
    )
    assert cli("status", "--json") == 0
    rows = {r["key"]: r for r in json.loads(capsys.readouterr().out)["resources"]}
    assert rows["s3:data"]["status"] == "drifted" and rows["s3:data"]["drifted"] == ["Versioning"]
    assert rows["kms:key"]["status"] == "in sync"
    assert cli("plan") == 0
    assert 'Versioning: "Suspended" → "Enabled"' in capsys.readouterr().out

    assert cli("destroy", "--yes") == 0
    assert "retained (use --force to delete)" in capsys.readouterr().out
    # Deletion protection keeps the table, like the model bucket; --force removes them (e2e).
    assert [b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]] == [
        "ml-pipeline-prod-models-123456789012-us-east-1"
    ]
    tables = boto3.client("dynamodb", region_name="us-east-1").list_tables()["TableNames"]
    assert tables == ["ml-pipeline-prod-predictions"]


def test_apply_without_a_terminal_needs_yes(
    aws: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert cli("apply") == 2
    assert "pass --yes" in capsys.readouterr().err
    assert boto3.client("s3").list_buckets()["Buckets"] == []


def test_unknown_profile_is_explained(
    fake_credentials: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(["--spec", str(SPEC_PATH), "--profile", "no-such-profile", "plan"])
    assert code == 1
    assert "AWS profile not found" in capsys.readouterr().err


def test_unreachable_endpoint_is_explained(
    fake_credentials: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(
        [
            "--spec",
            str(SPEC_PATH),
            "--region",
            "us-east-1",
            "--endpoint-url",
            "http://127.0.0.1:9",
            "plan",
        ]
    )
    assert code == 1
    assert "cannot reach" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--version"]) == 0
    assert capsys.readouterr().out.startswith("mlpipe ")


def test_a_served_version_without_artifact_blocks_only_what_serves_it(
    aws: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = yaml.safe_load(SPEC_PATH.read_text())
    del data["models"]["versions"]["v1.0.0"]["artifact"]
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(yaml.safe_dump(data))
    reason = (
        "blocked: v1.0.0 has no artifact (set models.versions.v1.0.0.artifact or run "
        "mlpipe models register v1.0.0 PATH)"
    )
    assert run(["--spec", str(spec), "--region", "us-east-1", "plan"]) == 0
    assert reason in capsys.readouterr().out
    assert run(["--spec", str(spec), "--region", "us-east-1", "apply", "--yes"]) == 1
    err = capsys.readouterr().err
    assert f"sagemaker:endpoint: {reason}" in " ".join(err.split())
    tables = boto3.client("dynamodb", region_name="us-east-1").list_tables()["TableNames"]
    assert tables == ["ml-pipeline-prod-predictions"]  # the rest applied
