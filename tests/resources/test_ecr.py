"""The batch image's repository: the pipeline key, scan on push, immutable tags, a lifecycle
policy; plan says how to push the image while its tag is missing."""

from __future__ import annotations

import json

import boto3

from mlpipe.core.context import Context
from mlpipe.core.plan import plan_apply
from mlpipe.naming import Arns
from mlpipe.resources import batch, ecr, iam, kms
from tests.support import four_step

REGION = "us-east-1"


def test_repository_is_encrypted_scanned_immutable_and_expires_untagged_images(
    ctx: Context,
) -> None:
    four_step(ctx, [*kms.resources(ctx), *ecr.resources(ctx)])
    client = boto3.client("ecr", region_name=REGION)
    [repo] = client.describe_repositories(repositoryNames=["ml-pipeline-prod-batch"])[
        "repositories"
    ]
    key = boto3.client("kms", region_name=REGION).describe_key(KeyId=ctx.names.kms_alias)
    assert repo["encryptionConfiguration"] == {
        "encryptionType": "KMS",
        "kmsKey": key["KeyMetadata"]["Arn"],
    }
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
    policy = client.get_lifecycle_policy(repositoryName="ml-pipeline-prod-batch")
    assert json.loads(policy["lifecyclePolicyText"]) == ecr.LIFECYCLE


def test_the_job_definition_runs_the_pipelines_image(ctx: Context) -> None:
    uri = Arns(ctx).image(ctx.spec.batch.image)
    assert uri == f"{ctx.aws.account}.dkr.ecr.{REGION}.amazonaws.com/ml-pipeline-prod-batch:1.0.0"
    assert ecr.REPOSITORY in batch.JobDefinition(ctx).depends_on
    statements = iam.role_definitions(ctx, "arn:aws:kms:us-east-1:123456789012:key/k")
    pull = next(s for s in statements["batch-execution"][1] if s["Sid"] == "PullImage")
    assert pull["Resource"] == [
        f"arn:aws:ecr:{REGION}:{ctx.aws.account}:repository/ml-pipeline-prod-batch"
    ]


def test_plan_says_how_to_push_a_missing_tag(ctx: Context) -> None:
    resources = [*kms.resources(ctx), *ecr.resources(ctx)]
    step = next(s for s in plan_apply(resources).steps if s.key == ecr.REPOSITORY)
    uri = f"{ctx.aws.account}.dkr.ecr.{REGION}.amazonaws.com/ml-pipeline-prod-batch:1.0.0"
    assert step.notes == [
        f"batch.image {uri} is not in the repository yet: docker build -f batch_job/Dockerfile "
        f"-t {uri} . && docker push {uri} (README: the batch job's image)"
    ]
    four_step(ctx, resources)
    boto3.client("ecr", region_name=REGION).put_image(
        repositoryName="ml-pipeline-prod-batch",
        imageManifest=json.dumps({"schemaVersion": 2, "config": {}, "layers": []}),
        imageManifestMediaType="application/vnd.docker.distribution.manifest.v2+json",
        imageTag="1.0.0",
    )
    step = next(s for s in plan_apply(resources).steps if s.key == ecr.REPOSITORY)
    assert step.notes == []
