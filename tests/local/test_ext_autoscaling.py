"""Application Auto Scaling on the embedded AWS answers what AWS answers for a scalable target or
a scaling policy that does not exist: ObjectNotFoundException."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError
from localaws_testing import REGION

pytestmark = pytest.mark.usefixtures("mocked")

WHERE = {
    "ServiceNamespace": "sagemaker",
    "ResourceId": "endpoint/e/variant/ModelA",
    "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
}


def test_deregistering_a_missing_target_is_object_not_found() -> None:
    client = boto3.client("application-autoscaling", region_name=REGION)
    with pytest.raises(ClientError) as caught:
        client.deregister_scalable_target(**WHERE)
    assert caught.value.response["Error"]["Code"] == "ObjectNotFoundException"
    assert caught.value.response["Error"]["Message"].startswith("No scalable target found")


def test_deleting_a_missing_policy_is_object_not_found() -> None:
    client = boto3.client("application-autoscaling", region_name=REGION)
    client.register_scalable_target(**WHERE, MinCapacity=1, MaxCapacity=2)
    with pytest.raises(ClientError) as caught:
        client.delete_scaling_policy(PolicyName="p", **WHERE)
    assert caught.value.response["Error"]["Code"] == "ObjectNotFoundException"
    client.deregister_scalable_target(**WHERE)  # a target that exists still goes
    assert not client.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
