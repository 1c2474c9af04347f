"""SageMaker CreateModel on the embedded AWS refuses what AWS refuses: model data that does not
exist, an image from another region."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError
from localaws_testing import ACCOUNT, REGION

pytestmark = pytest.mark.usefixtures("mocked")

ROLE = f"arn:aws:iam::{ACCOUNT}:role/sm"
IMAGE = f"683313688378.dkr.ecr.{REGION}.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"


def create(image: str = IMAGE, url: str = "s3://models/m/model.tar.gz") -> dict:
    sm = boto3.client("sagemaker", region_name=REGION)
    return sm.create_model(
        ModelName="m",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": image, "ModelDataUrl": url},
    )


@pytest.fixture
def bucket() -> None:
    boto3.client("s3", region_name=REGION).create_bucket(Bucket="models")


def test_create_model_refuses_missing_model_data(bucket: None) -> None:
    with pytest.raises(ClientError) as caught:
        create()
    err = caught.value.response["Error"]
    assert err["Code"] == "ValidationException"
    assert err["Message"] == "Could not find model data at s3://models/m/model.tar.gz."
    with pytest.raises(ClientError, match="Could not find model data"):
        create(url="s3://no-such-bucket/m/model.tar.gz")


def test_create_model_accepts_model_data_that_exists(bucket: None) -> None:
    boto3.client("s3", region_name=REGION).put_object(
        Bucket="models", Key="m/model.tar.gz", Body=b"x"
    )
    assert create()["ModelArn"].endswith(":model/m")


def test_create_model_refuses_a_cross_region_image(bucket: None) -> None:
    boto3.client("s3", region_name=REGION).put_object(
        Bucket="models", Key="m/model.tar.gz", Body=b"x"
    )
    other = "763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-inference:2.0-cpu-py310"
    with pytest.raises(ClientError) as caught:
        create(image=other)
    assert caught.value.response["Error"]["Message"] == (
        f'Region of "{other}" does not match expected region of {REGION}. '
        "Cross region ECR image pulls are not allowed."
    )
