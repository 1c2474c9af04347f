"""The real `mlpipe` command in subprocesses against the embedded AWS over HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import boto3

from tests.conftest import ROOT
from tests.e2e.conftest import mlpipe


def test_apply_status_destroy_over_http(env: dict[str, str], server: str) -> None:
    status = mlpipe(env, "local", "status", "--json")
    assert json.loads(status.stdout)["endpoint_url"] == server

    first = mlpipe(env, "--local", "apply", "--yes")
    assert "0 failed, 0 skipped" in first.stderr

    second = mlpipe(env, "--local", "apply", "--yes")
    assert "No changes" in second.stdout
    assert "Summary" not in second.stderr  # nothing was executed
    mlpipe(env, "--local", "plan", "--detailed-exitcode")

    aws = {
        "endpoint_url": server,
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    ddb = boto3.client("dynamodb", **aws)
    table = ddb.describe_table(TableName="ml-pipeline-prod-predictions")["Table"]
    assert table["StreamSpecification"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    ddb.update_continuous_backups(
        TableName="ml-pipeline-prod-predictions",
        PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": False},
    )
    rows = json.loads(mlpipe(env, "--local", "status", "--json").stdout)["resources"]
    drifted = {r["key"]: r["drifted"] for r in rows if r["status"] != "in sync"}
    assert drifted == {"dynamodb:predictions": ["PointInTimeRecovery"]}

    mlpipe(env, "--local", "destroy", "--yes")
    s3 = boto3.client("s3", **aws)
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == [
        "ml-pipeline-prod-models-123456789012-us-east-1"
    ]
    # Deletion protection keeps the table, like the model bucket; --force removes them.
    assert ddb.list_tables()["TableNames"] == ["ml-pipeline-prod-predictions"]
    mlpipe(env, "--local", "destroy", "--yes", "--force")
    assert s3.list_buckets()["Buckets"] == [] and ddb.list_tables()["TableNames"] == []


def test_bad_spec_exits_2_with_one_line(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "pipeline.yaml"
    bad.write_text(
        (ROOT / "config" / "pipeline.yaml").read_text().replace("weight: 20", "weight: 30")
    )
    proc = mlpipe(env, "--spec", str(bad), "--local", "plan", check=2)
    assert proc.stderr.strip() == f"{bad}: endpoint.variants: weights must add up to 100, got 110"
    # Validation came first: no embedded AWS was started for it.
    assert mlpipe(env, "local", "status", check=1).stdout.strip() == "not running"
