"""Model images fit the target region: framework shorthands resolve to SageMaker's prebuilt
image of the region; an ECR image of another region is refused, naming the key."""

from __future__ import annotations

import dataclasses

import pytest

from mlpipe.core import images
from mlpipe.core.clients import Aws, AwsTarget
from mlpipe.core.context import Context
from mlpipe.core.errors import SpecError
from mlpipe.core.plan import plan_apply
from mlpipe.resources import iam, kms, s3, ssm
from mlpipe.spec import Names, Spec

US_PYTORCH = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.0-cpu-py310"


@pytest.mark.parametrize(
    ("image", "region", "uri"),
    [
        ("sklearn:1.2-1", "us-east-1",
         "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"),
        ("sklearn:1.2-1", "eu-west-1",
         "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"),
        ("pytorch:2.0", "ap-northeast-3",
         "364406365360.dkr.ecr.ap-northeast-3.amazonaws.com/pytorch-inference:2.0-cpu-py310"),
        ("pytorch:2.0", "cn-north-1",
         "727897471807.dkr.ecr.cn-north-1.amazonaws.com.cn/pytorch-inference:2.0-cpu-py310"),
        (US_PYTORCH, "us-east-1", US_PYTORCH),
        ("registry.example.com/team/model:3", "eu-west-1", "registry.example.com/team/model:3"),
    ],
)  # fmt: skip
def test_images_resolve_for_the_region(image: str, region: str, uri: str) -> None:
    assert images.resolve("models.image", image, region) == uri


def test_an_ecr_image_of_another_region_is_refused_naming_the_key() -> None:
    with pytest.raises(SpecError) as caught:
        images.resolve("models.versions.v2.0.0.image", US_PYTORCH, "eu-west-1")
    assert caught.value.lines[0].startswith(
        f"models.versions.v2.0.0.image: {US_PYTORCH} is in us-east-1, but the pipeline is in "
        "eu-west-1"
    )


def test_unknown_frameworks_are_spec_errors() -> None:
    with pytest.raises(ValueError, match="unknown framework 'tensorflow'"):
        Spec.model_validate(
            {"pipeline": "pp", "environment": "e", "models": {"image": "tensorflow:2"}}
        )


def test_a_version_overrides_the_image(spec: Spec) -> None:
    data = spec.model_dump()
    data["models"]["versions"]["v2.0.0"]["image"] = "pytorch:2.0"
    models = Spec.model_validate(data).models
    assert images.model_image(models, "v1.0.0", "us-west-2").endswith(
        "/sagemaker-scikit-learn:1.2-1-cpu-py3"
    )
    assert images.model_image(models, "v2.0.0", "us-west-2") == (
        "763104351884.dkr.ecr.us-west-2.amazonaws.com/pytorch-inference:2.0-cpu-py310"
    )


def test_a_plan_in_eu_west_1_with_the_us_east_1_image_fails_before_any_write(
    ctx: Context,
) -> None:
    spec = ctx.spec.model_copy(
        update={"models": ctx.spec.models.model_copy(update={"image": US_PYTORCH})}
    )
    aws = Aws(AwsTarget(region="eu-west-1"))
    there = dataclasses.replace(
        ctx,
        aws=aws,
        spec=spec,
        names=Names(spec.pipeline, spec.environment, aws.account, "eu-west-1"),
    )
    with pytest.raises(
        SpecError, match=r"^models\.image: .* is in us-east-1, but the pipeline is in eu-west-1"
    ):
        plan_apply([r for m in (kms, s3, ssm, iam) for r in m.resources(there)])
    assert aws.log.writes() == []
