"""The endpoint-backed scorer against moto's SageMaker runtime, wired through ``main``."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import boto3
import pytest
from batch_job_support import ACTIVE_PARAM, DEPLOYMENT_PARAM, REGION, RUN_ID, Pipeline
from inference_common import Deployment, VariantState

from batch_job.scoring import ScoringError, VersionMap, encode_request, load_version_map
from tests.support import queue_endpoint_results

ENDPOINT = "ml-pipeline-endpoint"


def _create_endpoint() -> None:
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    variants = []
    for variant, weight in (("ModelA", 80.0), ("ModelB", 20.0)):
        model = f"model-{variant.lower()}"
        sagemaker.create_model(
            ModelName=model,
            ExecutionRoleArn="arn:aws:iam::123456789012:role/sagemaker-execution",
            PrimaryContainer={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/model:1"},
        )
        variants.append(
            {
                "VariantName": variant,
                "ModelName": model,
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
                "InitialVariantWeight": weight,
            }
        )
    sagemaker.create_endpoint_config(
        EndpointConfigName=f"{ENDPOINT}-cfg", ProductionVariants=variants
    )
    sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=f"{ENDPOINT}-cfg")


def _queue_results(packs: list[tuple[list[int], str | None]]) -> None:
    """Queue one canned response per expected request, in order."""
    results = []
    for indexes, variant in packs:
        result: dict[str, Any] = {
            "Body": json.dumps(
                {"predictions": [{"score": i / 100, "label": f"l{i}"} for i in indexes]}
            ),
            "ContentType": "application/json",
        }
        if variant is not None:
            result["InvokedProductionVariant"] = variant
        results.append(result)
    queue_endpoint_results(REGION, results)


def test_endpoint_scorer_packs_requests_and_maps_variants_to_versions(pipeline: Pipeline) -> None:
    _create_endpoint()
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name=ACTIVE_PARAM, Value="v0.9.0", Type="String", Overwrite=True
    )
    # Twelve records whose instances all encode to 10 bytes ("[1.5,10.0]" ... "[1.5,21.0]").
    records = [{"id": f"e{i}", "features": [1.5, float(10 + i)]} for i in range(12)]
    pipeline.put_input("scores.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    # A 60-byte limit fits 4 instances per request (59 bytes; 5 would take 70). With chunks of
    # 6 records: [0-3] [4-5] | [6-9] [10-11]. The third response names a variant missing from
    # the deployment state and the fourth names none: both fall back to the active version.
    _queue_results(
        [([0, 1, 2, 3], "ModelA"), ([4, 5], "ModelB"), ([6, 7, 8, 9], "ModelC"), ([10, 11], None)]
    )
    requests_sent: list[dict[str, Any]] = []
    pipeline.session.events.register(
        "before-parameter-build.sagemaker-runtime.InvokeEndpoint",
        lambda params, **_: requests_sent.append(dict(params)),
    )

    assert pipeline.run(None, ENDPOINT_NAME=ENDPOINT, CHUNK_SIZE=6, MAX_PAYLOAD_BYTES=60) == 0

    assert pipeline.calls["sagemaker-runtime.InvokeEndpoint"] == 4
    assert len(encode_request([r["features"] for r in records[:5]])) > 60
    bodies = [json.loads(request["Body"]) for request in requests_sent]
    assert [len(body["instances"]) for body in bodies] == [4, 2, 4, 2]
    assert [instance for body in bodies for instance in body["instances"]] == [
        r["features"] for r in records
    ]
    assert all(len(request["Body"]) <= 60 for request in requests_sent)
    assert all(request["EndpointName"] == ENDPOINT for request in requests_sent)
    assert all(request["ContentType"] == "application/json" for request in requests_sent)
    assert all(request["Accept"] == "application/json" for request in requests_sent)

    expected_version = {
        **dict.fromkeys(["e0", "e1", "e2", "e3"], "v1.0.0"),
        **dict.fromkeys(["e4", "e5"], "v2.0.0"),
        **dict.fromkeys(["e6", "e7", "e8", "e9", "e10", "e11"], "v0.9.0"),
    }
    lines = pipeline.json_lines("predictions/")
    assert {line["id"]: line["modelVersion"] for line in lines} == expected_version
    assert {line["id"]: line["prediction"]["score"] for line in lines} == {
        f"e{i}": i / 100 for i in range(12)
    }
    versions_in_paths = {key.split("/")[2] for key in pipeline.keys("predictions/")}
    assert versions_in_paths == {
        "model_version=v1.0.0",
        "model_version=v2.0.0",
        "model_version=v0.9.0",
    }
    assert all(f"/run={RUN_ID}/" in key for key in pipeline.keys("predictions/"))

    items = {item["recordId"]: item for item in pipeline.items()}
    assert {rid: item["modelVersion"] for rid, item in items.items()} == expected_version
    assert {rid: item.get("invokedVariant") for rid, item in items.items()} == {
        **dict.fromkeys(["e0", "e1", "e2", "e3"], "ModelA"),
        **dict.fromkeys(["e4", "e5"], "ModelB"),
        **dict.fromkeys(["e6", "e7", "e8", "e9"], "ModelC"),
        **dict.fromkeys(["e10", "e11"], None),
    }
    assert items["e7"]["prediction"] == {"score": Decimal("0.07"), "label": "l7"}


def test_version_map_reads_deployment_state_and_active_version(aws: None) -> None:
    ssm = boto3.client("ssm", region_name=REGION)
    ssm.put_parameter(Name=ACTIVE_PARAM, Value="v1.0.0", Type="String")
    ssm.put_parameter(
        Name=DEPLOYMENT_PARAM,
        Value=json.dumps(
            {
                "variants": [
                    {"name": "ModelA", "version": "v1.0.0", "weight": 80},
                    {"name": "ModelB", "version": "v2.0.0", "weight": 20},
                ],
                "champion": "ModelA",
                "challenger": "ModelB",
            }
        ),
        Type="String",
    )

    versions = load_version_map(ssm, ACTIVE_PARAM, DEPLOYMENT_PARAM)

    assert versions.active_version == "v1.0.0"
    assert versions.deployment == Deployment(
        (VariantState("ModelA", "v1.0.0", 80), VariantState("ModelB", "v2.0.0", 20)),
        "ModelA",
        "ModelB",
    )
    assert versions.resolve("ModelB") == "v2.0.0"
    assert versions.resolve("AllTraffic") == "v1.0.0"
    assert versions.resolve(None) == "v1.0.0"


def test_missing_deployment_state_falls_back_to_active_version(aws: None) -> None:
    ssm = boto3.client("ssm", region_name=REGION)
    ssm.put_parameter(Name=ACTIVE_PARAM, Value="v3.1.0", Type="String")

    versions = load_version_map(ssm, ACTIVE_PARAM, DEPLOYMENT_PARAM)

    assert versions.resolve("ModelA") == "v3.1.0"


def test_malformed_deployment_state_is_an_error(aws: None) -> None:
    ssm = boto3.client("ssm", region_name=REGION)
    ssm.put_parameter(Name=ACTIVE_PARAM, Value="v1.0.0", Type="String")
    ssm.put_parameter(Name=DEPLOYMENT_PARAM, Value='{"variants": [{"name": "A"}]}', Type="String")

    with pytest.raises(ScoringError, match="malformed"):
        load_version_map(ssm, ACTIVE_PARAM, DEPLOYMENT_PARAM)


def test_unknown_variant_without_active_version_is_an_error() -> None:
    with pytest.raises(ScoringError, match="ModelC"):
        VersionMap(Deployment((VariantState("ModelA", "v1.0.0", 100),), "ModelA")).resolve("ModelC")
