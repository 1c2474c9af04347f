"""One SageMaker Model per model version the deployment state serves.

Models are immutable and named with their version; image and artifact come from the version's
metadata parameter. Models no longer referenced are kept: a retained endpoint config may still
use them for a rollback. Destroy deletes every Model mlpipe tagged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlpipe.core.context import Context
from mlpipe.core.diff import Diff, diff, tags_to_list
from mlpipe.core.find import forget
from mlpipe.core.resource import Observed, Outputs, Refs
from mlpipe.core.tagging import read_tags, sync_tags
from mlpipe.resources import artifacts, network, ssm
from mlpipe.resources.sagemaker.serving import (
    DEPLOYMENT,
    ROLE,
    Served,
    Serving,
    network_keys,
)

# Properties a Model is created with and never changes (a version's artifact is immutable).
MODEL_FIXED = ("Image", "ModelDataUrl", "ExecutionRoleArn", "VpcConfig")


def unavailable(version: str) -> str:
    return (
        f"{version} has no artifact (set models.versions.{version}.artifact or run "
        f"mlpipe models register {version} PATH)"
    )


def _vpc_config(config: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The models' VpcConfig, lists sorted once their ids are known."""
    if not config:
        return None
    return {k: sorted(v) if all(isinstance(i, str) for i in v) else v for k, v in config.items()}


class Models(Served):
    """A Model for every version the deployment state serves."""

    def __init__(self, ctx: Context, serving: Serving) -> None:
        metadata = tuple(f"{ssm.Parameter.kind}:metadata-{v}" for v in ctx.spec.models.versions)
        uploads = tuple(artifacts.artifact_key(v) for v in artifacts.declared(ctx))
        super().__init__(
            ctx,
            "models",
            f"{ctx.names.model_prefix}*",
            serving,
            depends_on=(ROLE, DEPLOYMENT, *metadata, *uploads, *network_keys(ctx)),
        )

    def _metadata(self) -> tuple[list[str], dict[str, dict[str, Any]]]:
        """The versions served, and the metadata of those that have an artifact."""
        versions = self.serving.state().versions
        return versions, self.serving.metadata(versions)

    def blocked(self, observed: Observed | None) -> str | None:
        versions, metadata = self._metadata()
        return "; ".join(unavailable(v) for v in versions if v not in metadata) or None

    def read(self) -> Observed | None:
        sm = self.client("sagemaker")
        models: dict[str, Any] = {}
        arns: dict[str, str] = {}
        for version in self.serving.state().versions:
            name = self.ctx.names.model(version)
            model = self.find("sagemaker", "describe_model", ModelName=name)
            if model is None:
                continue
            container = model.get("PrimaryContainer") or {}
            arns[name] = model["ModelArn"]
            models[name] = {
                "Image": container.get("Image"),
                "ModelDataUrl": container.get("ModelDataUrl"),
                "ExecutionRoleArn": model.get("ExecutionRoleArn"),
                "VpcConfig": _vpc_config(model.get("VpcConfig")),
                "Tags": read_tags(sm, model["ModelArn"]),
            }
        if not models:
            return None
        owned = all(self.ctx.owns(m["Tags"]) for m in models.values())
        return Observed({"Models": models}, {"arns": arns}, owned)

    def desired(self, refs: Refs) -> dict[str, Any]:
        models = {}
        for version, meta in sorted(self._metadata()[1].items()):
            registered = ssm.is_registered(meta)
            models[self.ctx.names.model(version)] = {
                "Image": meta["image"],
                # Registered by this apply: the artifact's location once it is uploaded.
                "ModelDataUrl": meta["s3Path"]
                if registered
                else refs(artifacts.artifact_key(version), "s3Path"),
                "ExecutionRoleArn": refs(ROLE, "arn"),
                "VpcConfig": _vpc_config(
                    {
                        "SecurityGroupIds": [refs(network.SG_SAGEMAKER, "id")],
                        "Subnets": [refs(k, "id") for k in network.subnet_keys(self.ctx.spec)],
                    }
                ),
                "Tags": self.tags,
            }
        return {"Models": models}

    def diff(self, current: Mapping[str, Any], desired: Mapping[str, Any]) -> Diff:
        live = current.get("Models", {})
        return diff(
            current,
            desired,
            ignore=[f"Models.{name}.{prop}" for name in live for prop in MODEL_FIXED],
            exact=[f"Models.{name}.Tags" for name in desired["Models"]],
        )

    def create(self, desired: dict[str, Any]) -> Outputs:
        return self.update(Observed({"Models": {}}, {"arns": {}}), desired, Diff())

    def update(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> Outputs:
        live = observed.state["Models"]
        arns = dict(observed.outputs["arns"])
        for name, model in desired["Models"].items():
            if name not in live:
                arns[name] = self._create(name, model)
            elif live[name]["Tags"] != model["Tags"]:
                sync_tags(self.client("sagemaker"), arns[name], live[name]["Tags"], model["Tags"])
        return {"arns": arns}

    def _create(self, name: str, model: Mapping[str, Any]) -> str:
        sm = self.client("sagemaker")
        created = self.ctx.eventually(
            lambda: sm.create_model(
                ModelName=name,
                PrimaryContainer={"Image": model["Image"], "ModelDataUrl": model["ModelDataUrl"]},
                ExecutionRoleArn=model["ExecutionRoleArn"],
                VpcConfig=model["VpcConfig"],
                EnableNetworkIsolation=True,
                Tags=tags_to_list(model["Tags"]),
            ),
            "sagemaker-role-not-assumable",
            "sagemaker-model-data-not-accessible",
        )
        return str(created["ModelArn"])

    def _owned(self) -> list[str]:
        """Every model this pipeline made (found by its tags), served or not."""
        sm, prefix, found = self.client("sagemaker"), self.ctx.names.model_prefix, []
        for page in sm.get_paginator("list_models").paginate(NameContains=prefix):
            for model in page["Models"]:
                if model["ModelName"].startswith(prefix) and self.ctx.owns(
                    read_tags(sm, model["ModelArn"])
                ):
                    found.append(model["ModelName"])
        return found

    def remnants(self) -> Observed | None:
        owned = self._owned()
        return Observed({"Models": sorted(owned)}, {"arns": {}}) if owned else None

    def delete(self, observed: Observed) -> None:
        for name in self._owned():
            forget(self.client("sagemaker"), "delete_model", ModelName=name)
