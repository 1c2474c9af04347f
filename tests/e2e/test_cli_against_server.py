"""The real `mlpipe` command in subprocesses against the embedded AWS over HTTP.

The module's tests share one detached embedded AWS and the pipeline its first apply built: two
applies at once whose non-idempotent creates lose their responses. The tests after the first
need only an applied pipeline and leave it applied; they run in this file's order, the
destroy last.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from mlpipe.local.faults import ADMIN_PATH
from tests.conftest import ROOT
from tests.e2e.conftest import boto_args, cli_env, local_up, mlpipe
from tests.reliability.test_creates import NON_IDEMPOTENT

TABLE = "ml-pipeline-prod-predictions"


def faults(server: str, plan: dict[str, Any] | None = None, method: str = "GET") -> Any:
    data = json.dumps(plan).encode() if plan is not None else None
    request = urllib.request.Request(
        server + ADMIN_PATH, data=data, method="POST" if data else method
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


@dataclass(frozen=True)
class Deployed:
    env: dict[str, str]
    server: str
    applies: list[tuple[int, str, str]]  # the first two applies: exit code, stdout, stderr
    lost: int  # the responses the embedded AWS lost during them


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    env = cli_env(tmp_path_factory.mktemp("e2e"))
    with local_up(env) as server:
        lose = [{"match": call, "kind": "lose"} for call in NON_IDEMPOTENT]
        faults(server, {"seed": 1, "rules": lose})
        command = [sys.executable, "-m", "mlpipe", "--local", "apply", "--yes"]
        pipe = subprocess.PIPE
        runs = [
            subprocess.Popen(command, cwd=ROOT, env=env, stdout=pipe, stderr=pipe, text=True)
            for _ in range(2)
        ]
        applies = [(run.wait(timeout=600), *run.communicate()) for run in runs]
        lost = faults(server)["counts"]["lose"]
        faults(server, method="DELETE")  # the later tests run without faults
        yield Deployed(env, server, applies, lost)


def test_two_applies_with_lost_responses_end_with_one_pipeline(deployed: Deployed) -> None:
    env, server = deployed.env, deployed.server
    codes = sorted(code for code, _, _ in deployed.applies)
    assert codes[0] == 0, deployed.applies
    summaries = [err for code, _, err in deployed.applies if code == 0]
    assert any("0 failed, 0 skipped" in err for err in summaries), summaries
    if codes[1]:  # it found the lock taken: it changed nothing
        refused = next(err for code, _, err in deployed.applies if code)
        assert "another operation holds the lock" in refused, refused
    assert deployed.lost == len(NON_IDEMPOTENT)

    third = mlpipe(env, "--local", "apply", "--yes")
    assert "No changes" in third.stdout
    assert "Summary" not in third.stderr  # nothing was executed

    aws = boto_args(server)
    ec2 = boto3.client("ec2", **aws)
    owner = [{"Name": "tag:mlpipe:pipeline", "Values": ["ml-pipeline-prod"]}]
    assert len(ec2.describe_vpcs(Filters=owner)["Vpcs"]) == 1
    # Lambda, Batch, endpoints, SageMaker, and the VPC's default group (tagged, emptied).
    assert len(ec2.describe_security_groups(Filters=owner)["SecurityGroups"]) == 5
    keys = boto3.client("apigateway", **aws).get_api_keys()["items"]
    assert [k["name"] for k in keys] == ["ml-pipeline-prod-api-key"]


def test_status_over_http_shows_drift(deployed: Deployed) -> None:
    env, server = deployed.env, deployed.server
    status = mlpipe(env, "local", "status", "--json")
    assert json.loads(status.stdout)["endpoint_url"] == server

    ddb = boto3.client("dynamodb", **boto_args(server))
    table = ddb.describe_table(TableName=TABLE)["Table"]
    assert table["StreamSpecification"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"

    def recovery(enabled: bool) -> None:
        ddb.update_continuous_backups(
            TableName=TABLE,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": enabled},
        )

    recovery(False)
    try:
        rows = json.loads(mlpipe(env, "--local", "status", "--json").stdout)["resources"]
    finally:
        recovery(True)  # the next tests start from the applied pipeline
    drifted = {r["key"]: r["drifted"] for r in rows if r["status"] != "in sync"}
    assert drifted == {"dynamodb:predictions": ["PointInTimeRecovery"]}


def test_register_traffic_promote_rollback_history(deployed: Deployed, tmp_path: Path) -> None:
    env = deployed.env
    # The spec names v1.0.0's and v2.0.0's artifacts: the apply registered and serves them.
    model = tmp_path / "v3.1.4"
    model.mkdir()
    (model / "model.json").write_text(json.dumps({"version": "v3.1.4"}))
    registered = mlpipe(env, "--local", "models", "register", "v3.1.4", str(model))
    assert json.loads(registered.stdout)["version"] == "v3.1.4"

    aws = boto_args(deployed.server)
    sm, ssm = boto3.client("sagemaker", **aws), boto3.client("ssm", **aws)

    def weights() -> dict[str, float]:
        endpoint = sm.describe_endpoint(EndpointName="ml-pipeline-prod-endpoint")
        return {v["VariantName"]: v["CurrentWeight"] for v in endpoint["ProductionVariants"]}

    def active() -> str:
        param = ssm.get_parameter(Name="/ml-pipeline/prod/models/active-version")
        return param["Parameter"]["Value"]

    shifted = mlpipe(env, "--local", "traffic", "--a", "70", "--b", "30")
    assert "ModelA: v1.0.0 80% → v1.0.0 70%" in shifted.stdout
    assert weights() == {"ModelA": 0.7, "ModelB": 0.3}

    refused = mlpipe(env, "--local", "traffic", "--a", "70", "--b", "40", check=2)
    assert "weights must add up to 100, got 110" in refused.stderr
    assert weights() == {"ModelA": 0.7, "ModelB": 0.3}

    unknown = mlpipe(env, "--local", "promote", "v9.0.0", check=2)
    assert "v9.0.0 is not registered" in unknown.stderr

    promoted = mlpipe(env, "--local", "promote", "v3.1.4")
    assert "active: v1.0.0 → v3.1.4" in promoted.stdout
    assert active() == "v3.1.4" and weights() == {"ModelA": 0.0, "ModelB": 1.0}

    # Back to the version the first apply served, registered by that apply.
    rolled = mlpipe(env, "--local", "rollback")
    assert "active: v3.1.4 → v1.0.0" in rolled.stdout
    assert "rollback took" in rolled.stderr
    assert active() == "v1.0.0" and weights() == {"ModelA": 1.0, "ModelB": 0.0}

    trail = json.loads(mlpipe(env, "--local", "history", "--json").stdout)
    whats = [e["what"] for e in trail]
    # A version no variant serves is deployed on the challenger first, then promoted.
    assert whats[:4] == ["rollback", "promote", "promote", "traffic"], whats

    listed = json.loads(mlpipe(env, "--local", "models", "list", "--json").stdout)
    assert {r["version"]: (r["active"], r["registered"]) for r in listed} == {
        "v1.0.0": (True, True),
        "v2.0.0": (False, True),
        "v3.1.4": (False, True),
    }


def test_destroy_force_leaves_nothing(deployed: Deployed) -> None:
    # Without --force, deletion protection keeps the table and the model bucket: tests/cli.
    mlpipe(deployed.env, "--local", "destroy", "--yes", "--force")
    aws = boto_args(deployed.server)
    tagging = boto3.client("resourcegroupstaggingapi", **aws)
    left = [
        m["ResourceARN"]
        for m in tagging.get_resources(
            TagFilters=[{"Key": "mlpipe:pipeline", "Values": ["ml-pipeline-prod"]}]
        )["ResourceTagMappingList"]
        if ":kms:" not in m["ResourceARN"]  # scheduled for deletion, tags and all
    ]
    assert left == []
    assert boto3.client("apigateway", **aws).get_api_keys()["items"] == []
    assert boto3.client("s3", **aws).list_buckets()["Buckets"] == []
    assert boto3.client("dynamodb", **aws).list_tables()["TableNames"] == []


def test_bad_spec_exits_2_with_one_line(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "pipeline.yaml"
    bad.write_text(
        (ROOT / "config" / "pipeline.yaml").read_text().replace("weight: 20", "weight: 30")
    )
    proc = mlpipe(env, "--spec", str(bad), "--local", "plan", check=2)
    assert proc.stderr.strip() == f"{bad}: endpoint.variants: weights must add up to 100, got 110"
    # Validation came first: no embedded AWS was started for it.
    assert mlpipe(env, "local", "status", check=1).stdout.strip() == "not running"
