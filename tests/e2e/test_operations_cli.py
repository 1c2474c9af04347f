"""The model operations through the real CLI against the embedded AWS over HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import boto3

from tests.e2e.conftest import mlpipe


def test_register_traffic_promote_rollback_history(
    env: dict[str, str], server: str, tmp_path: Path
) -> None:
    # The spec names v1.0.0's and v2.0.0's artifacts: the apply registers and serves them.
    mlpipe(env, "--local", "apply", "--yes")
    model = tmp_path / "v3.1.4"
    model.mkdir()
    (model / "model.json").write_text(json.dumps({"version": "v3.1.4"}))
    registered = mlpipe(env, "--local", "models", "register", "v3.1.4", str(model))
    assert json.loads(registered.stdout)["version"] == "v3.1.4"

    aws = {
        "endpoint_url": server,
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
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
