"""The CLI against the embedded AWS with lost responses: two applies at once, then a third."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from typing import Any

import boto3

from mlpipe.local.faults import ADMIN_PATH
from tests.conftest import ROOT
from tests.e2e.conftest import mlpipe
from tests.reliability.test_creates import NON_IDEMPOTENT


def faults(server: str, plan: dict[str, Any] | None = None) -> Any:
    data = json.dumps(plan).encode() if plan is not None else None
    request = urllib.request.Request(
        server + ADMIN_PATH, data=data, method="POST" if data else "GET"
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def test_two_applies_with_lost_responses_end_with_one_pipeline(
    env: dict[str, str], server: str
) -> None:
    faults(server, {"seed": 1, "rules": [{"match": c, "kind": "lose"} for c in NON_IDEMPOTENT]})
    command = [sys.executable, "-m", "mlpipe", "--local", "apply", "--yes"]
    runs = [
        subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    results = [(run.wait(timeout=600), *run.communicate()) for run in runs]
    codes = sorted(code for code, _, _ in results)
    assert codes[0] == 0, results
    if codes[1]:  # it found the lock taken: it changed nothing
        refused = next(err for code, _, err in results if code)
        assert "another operation holds the lock" in refused, refused
    assert faults(server)["counts"]["lose"] == len(NON_IDEMPOTENT)

    third = mlpipe(env, "--local", "apply", "--yes")
    assert "No changes" in third.stdout and "Summary" not in third.stderr

    aws = {
        "endpoint_url": server,
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    ec2 = boto3.client("ec2", **aws)
    owner = [{"Name": "tag:mlpipe:pipeline", "Values": ["ml-pipeline-prod"]}]
    assert len(ec2.describe_vpcs(Filters=owner)["Vpcs"]) == 1
    # Lambda, Batch, endpoints, SageMaker, and the VPC's default group (tagged, emptied).
    assert len(ec2.describe_security_groups(Filters=owner)["SecurityGroups"]) == 5
    keys = boto3.client("apigateway", **aws).get_api_keys()["items"]
    assert [k["name"] for k in keys] == ["ml-pipeline-prod-api-key"]

    mlpipe(env, "--local", "destroy", "--yes", "--force")
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
