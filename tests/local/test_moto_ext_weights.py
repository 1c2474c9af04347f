"""UpdateEndpointWeightsAndCapacities under the moto extensions keeps what it is not given."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from localaws_testing import ACCOUNT, REGION, TRANSITION_SECONDS, FakeClock

pytestmark = pytest.mark.usefixtures("mocked")


@pytest.fixture
def live(clock: FakeClock) -> Any:
    client = boto3.client("sagemaker", region_name=REGION)
    client.create_model(
        ModelName="model-a",
        ExecutionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/mlpipe-sagemaker",
        PrimaryContainer={"Image": "img:latest"},
    )
    client.create_endpoint_config(
        EndpointConfigName="config-1",
        ProductionVariants=[
            {
                "VariantName": name,
                "ModelName": "model-a",
                "InitialInstanceCount": count,
                "InstanceType": "ml.m5.large",
                "InitialVariantWeight": weight,
            }
            for name, weight, count in (("ModelA", 0.8, 2), ("ModelB", 0.2, 3))
        ],
    )
    client.create_endpoint(EndpointName="ep", EndpointConfigName="config-1")
    clock.advance(TRANSITION_SECONDS)
    return client


def variants(client: Any) -> dict[str, tuple[Any, ...]]:
    described = client.describe_endpoint(EndpointName="ep")["ProductionVariants"]
    return {
        v["VariantName"]: (
            v.get("CurrentWeight"),
            v.get("DesiredWeight"),
            v.get("CurrentInstanceCount"),
            v.get("DesiredInstanceCount"),
        )
        for v in described
    }


def test_a_weight_only_change_keeps_the_instance_counts(live: Any, clock: FakeClock):
    live.update_endpoint_weights_and_capacities(
        EndpointName="ep",
        DesiredWeightsAndCapacities=[
            {"VariantName": "ModelA", "DesiredWeight": 0.7},
            {"VariantName": "ModelB", "DesiredWeight": 0.3},
        ],
    )
    clock.advance(TRANSITION_SECONDS)
    assert variants(live) == {"ModelA": (0.7, 0.7, 2, 2), "ModelB": (0.3, 0.3, 3, 3)}


def test_a_capacity_only_change_keeps_the_weight(live: Any, clock: FakeClock):
    live.update_endpoint_weights_and_capacities(
        EndpointName="ep",
        DesiredWeightsAndCapacities=[{"VariantName": "ModelB", "DesiredInstanceCount": 5}],
    )
    clock.advance(TRANSITION_SECONDS)
    assert variants(live) == {"ModelA": (0.8, 0.8, 2, 2), "ModelB": (0.2, 0.2, 5, 5)}
