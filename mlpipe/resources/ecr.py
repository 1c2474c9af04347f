"""The batch job's image repository: the pipeline key, scan on push, immutable tags, expiry."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from mlpipe.core.context import Context
from mlpipe.core.diff import Diff, sync_tags, tags_from_list, tags_to_list
from mlpipe.core.errors import is_not_found
from mlpipe.core.resource import Observed, Outputs, Refs, Resource
from mlpipe.resources.kms import KEY

REPOSITORY = "ecr:batch"
UNTAGGED = {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days"}
# Untagged layers (left by re-pushes) expire; tagged images stay: a job may run any of them.
LIFECYCLE = {"rules": [{"rulePriority": 1, "description": "expire untagged images",
                        "selection": {**UNTAGGED, "countNumber": 14},
                        "action": {"type": "expire"}}]}  # fmt: skip
PUSH = (
    "docker build -f batch_job/Dockerfile -t {uri} . && docker push {uri} "
    "(README: the batch job's image)"
)


def repository_name(ctx: Context) -> str:
    return f"{ctx.names.pipeline_id}-batch"


def image_uri(ctx: Context, image: str) -> str:
    """The image to run: a bare tag is in the pipeline's repository (`ecr:batch`); one named
    without a registry is in this account's ECR, as the execution role's pull permission
    (`Arns.ecr_repository`) has it."""
    if "/" not in image and ":" not in image:
        image = f"{repository_name(ctx)}:{image}"
    registry = image.split("/", 1)[0]
    if "/" in image and ("." in registry or ":" in registry or registry == "localhost"):
        return image
    aws = ctx.aws
    suffix = ".cn" if aws.partition == "aws-cn" else ""
    return f"{aws.account}.dkr.ecr.{aws.region}.amazonaws.com{suffix}/{image}"


class Repository(Resource):
    kind = "ecr"
    replace_on = ("Encryption",)  # set at creation only

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, "batch", repository_name(ctx), depends_on=(KEY,))

    def read(self) -> Observed | None:
        ecr, name = self.client("ecr"), self.physical
        try:
            repo = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
            text = ecr.get_lifecycle_policy(repositoryName=name)["lifecyclePolicyText"]
        except ClientError as exc:
            if not is_not_found(exc, "RepositoryNotFoundException"):
                if not is_not_found(exc, "LifecyclePolicyNotFoundException"):
                    raise
                text = "null"
            else:
                return None
        tags = tags_from_list(ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"])
        state = {
            "Encryption": repo.get("encryptionConfiguration"),
            "Mutability": repo.get("imageTagMutability"),
            "ScanOnPush": repo.get("imageScanningConfiguration", {}).get("scanOnPush"),
            "Lifecycle": json.loads(text),
            "Tags": tags,
        }
        return Observed(state, self._outputs(repo), self.ctx.owns(tags))

    def _outputs(self, repo: dict[str, Any]) -> Outputs:
        return {"name": self.physical, "arn": repo["repositoryArn"], "uri": repo["repositoryUri"]}

    def desired(self, refs: Refs) -> dict[str, Any]:
        encryption = {"encryptionType": "KMS", "kmsKey": refs(KEY, "arn")}
        return {"Encryption": encryption, "Mutability": "IMMUTABLE", "ScanOnPush": True,
                "Lifecycle": LIFECYCLE, "Tags": self.tags}  # fmt: skip

    def create(self, desired: dict[str, Any]) -> Outputs:
        repo = self.client("ecr").create_repository(
            repositoryName=self.physical,
            imageTagMutability=desired["Mutability"],
            imageScanningConfiguration={"scanOnPush": desired["ScanOnPush"]},
            encryptionConfiguration=desired["Encryption"],
            tags=tags_to_list(desired["Tags"]),
        )["repository"]
        self.update(Observed({}, self._outputs(repo)), desired, Diff())
        return self._outputs(repo)

    def update(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> Outputs:
        ecr, name, arn = self.client("ecr"), self.physical, observed.outputs["arn"]
        if not observed.state or changes.touches("Lifecycle"):
            text = json.dumps(desired["Lifecycle"])
            ecr.put_lifecycle_policy(repositoryName=name, lifecyclePolicyText=text)
        if changes.touches("Mutability"):
            ecr.put_image_tag_mutability(repositoryName=name, imageTagMutability="IMMUTABLE")
        if changes.touches("ScanOnPush"):
            scan = {"scanOnPush": True}
            ecr.put_image_scanning_configuration(
                repositoryName=name, imageScanningConfiguration=scan
            )
        if changes.touches("Tags"):
            sync_tags(
                observed.state["Tags"],
                desired["Tags"],
                lambda t: ecr.tag_resource(resourceArn=arn, tags=tags_to_list(t)),
                lambda keys: ecr.untag_resource(resourceArn=arn, tagKeys=keys),
            )
        return observed.outputs

    def delete(self, observed: Observed) -> None:
        self.client("ecr").delete_repository(repositoryName=self.physical, force=True)

    def warnings(self) -> list[str]:
        uri = image_uri(self.ctx, self.ctx.spec.batch.image)
        repo, _, tag = uri.partition("/")[2].partition(":")
        try:
            if repo == self.physical:
                self.client("ecr").describe_images(
                    repositoryName=repo, imageIds=[{"imageTag": tag}]
                )
        except ClientError as exc:
            if not is_not_found(exc, "RepositoryNotFoundException", "ImageNotFoundException"):
                raise
            return [f"batch.image {uri} is not in the repository yet: {PUSH.format(uri=uri)}"]
        return []


def resources(ctx: Context) -> list[Resource]:
    return [Repository(ctx)]
