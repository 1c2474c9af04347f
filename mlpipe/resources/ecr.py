"""The batch job's image repository: the pipeline key, scan on push, immutable tags, expiry."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from mlpipe.core.context import Context
from mlpipe.core.diff import tags_to_list
from mlpipe.core.resource import AspectResource, Observed, Outputs, Refs, Resource
from mlpipe.naming import Arns
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


class Repository(AspectResource):
    kind = "ecr"
    tagging = "ecr"
    replace_on = ("Encryption",)  # set at creation only

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, "batch", ctx.names.batch_repository, depends_on=(KEY,))

    def read(self) -> Observed | None:
        found = self.find("ecr", "describe_repositories", repositoryNames=[self.physical])
        if found is None:
            return None
        repo = found["repositories"][0]
        lifecycle = self.find("ecr", "get_lifecycle_policy", repositoryName=self.physical)
        state = {
            "Encryption": repo.get("encryptionConfiguration"),
            "Mutability": repo.get("imageTagMutability"),
            "ScanOnPush": repo.get("imageScanningConfiguration", {}).get("scanOnPush"),
            "Lifecycle": json.loads(lifecycle["lifecyclePolicyText"]) if lifecycle else None,
            "Tags": self.live_tags(repo["repositoryArn"]),
        }
        return Observed(state, self._outputs(repo), self.ctx.owns(state["Tags"]))

    def _outputs(self, repo: dict[str, Any]) -> Outputs:
        return {"name": self.physical, "arn": repo["repositoryArn"], "uri": repo["repositoryUri"]}

    def desired(self, refs: Refs) -> dict[str, Any]:
        encryption = {"encryptionType": "KMS", "kmsKey": refs(KEY, "arn")}
        return {"Encryption": encryption, "Mutability": "IMMUTABLE", "ScanOnPush": True,
                "Lifecycle": LIFECYCLE, "Tags": self.tags}  # fmt: skip

    def aspects(self) -> dict[str, Callable[[Any], None]]:
        ecr, name = self.client("ecr"), {"repositoryName": self.physical}
        return {
            "Lifecycle": lambda v: ecr.put_lifecycle_policy(
                **name, lifecyclePolicyText=json.dumps(v)
            ),
            "Mutability": lambda v: ecr.put_image_tag_mutability(**name, imageTagMutability=v),
            "ScanOnPush": lambda v: ecr.put_image_scanning_configuration(
                **name, imageScanningConfiguration={"scanOnPush": v}
            ),
        }

    def create(self, desired: dict[str, Any]) -> Outputs:
        repo = self.client("ecr").create_repository(
            repositoryName=self.physical,
            imageTagMutability=desired["Mutability"],
            imageScanningConfiguration={"scanOnPush": desired["ScanOnPush"]},
            encryptionConfiguration=desired["Encryption"],
            tags=tags_to_list(desired["Tags"]),
        )["repository"]
        self.aspects()["Lifecycle"](desired["Lifecycle"])  # the only one not set at creation
        return self._outputs(repo)

    def delete(self, observed: Observed) -> None:
        self.client("ecr").delete_repository(repositoryName=self.physical, force=True)

    def warnings(self) -> list[str]:
        uri = Arns(self.ctx).image(self.ctx.spec.batch.image)
        repo, _, tag = uri.partition("/")[2].partition(":")
        pushed = {"repositoryName": repo, "imageIds": [{"imageTag": tag}]}
        if repo != self.physical or self.find("ecr", "describe_images", **pushed):
            return []
        return [f"batch.image {uri} is not in the repository yet: {PUSH.format(uri=uri)}"]


def resources(ctx: Context) -> list[Resource]:
    return [Repository(ctx)]
