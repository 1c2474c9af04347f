"""The Parameter Store model registry: active version, deployment state, version metadata.

Values are seeds: the first apply writes them from the spec; afterwards the model commands
(register, traffic, promote, rollback) own them, so apply never compares or rewrites a value.
Description and tags stay managed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from mlpipe.core import images
from mlpipe.core.context import Context
from mlpipe.core.diff import Diff, Unknown, contains_unknown, tags_to_list
from mlpipe.core.find import forget
from mlpipe.core.resource import Observed, Outputs, Refs, Resource
from mlpipe.naming import Arns
from mlpipe.ops.state import DeploymentState
from mlpipe.resources.artifacts import artifact_key, declared


class Parameter(Resource):
    kind = "ssm"
    ignore = ("Value",)
    tagging = "ssm"
    tag_id = "name"

    def __init__(
        self, ctx: Context, name: str, physical: str, value: str, description: str
    ) -> None:
        super().__init__(ctx, name, physical)
        self.value = value
        self.description = description

    def _outputs(self) -> Outputs:
        return {"name": self.physical, "arn": Arns(self.ctx).parameter(self.physical)}

    def read(self) -> Observed | None:
        found = self.find("ssm", "get_parameter", Name=self.physical)
        if found is None:
            return None
        param = found["Parameter"]
        meta = self.client("ssm").describe_parameters(
            ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": [self.physical]}]
        )["Parameters"][0]
        tags = self.live_tags(self.physical)
        state = {
            "Type": param["Type"],
            "Value": param["Value"],
            "Description": meta.get("Description", ""),
            "Tags": tags,
        }
        return Observed(state, self._outputs(), self.ctx.owns(tags))

    def desired(self, refs: Refs) -> dict[str, Any]:
        return {
            "Type": "String",
            "Value": self.value,
            "Description": self.description,
            "Tags": self.tags,
        }

    def create(self, desired: dict[str, Any]) -> Outputs:
        self.client("ssm").put_parameter(
            Name=self.physical,
            Value=desired["Value"],
            Type=desired["Type"],
            Description=desired["Description"],
            Tier="Standard",
            Tags=tags_to_list(desired["Tags"]),
        )
        return self._outputs()

    def update(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> Outputs:
        if changes.touches("Description") or changes.touches("Type"):
            self.client("ssm").put_parameter(
                Name=self.physical,
                Value=observed.state["Value"],
                Type=desired["Type"],
                Description=desired["Description"],
                Overwrite=True,
            )
        return observed.outputs

    def delete(self, observed: Observed) -> None:
        forget(self.client("ssm"), "delete_parameter", Name=self.physical)


class Registry(Resource):
    """The metadata parameters of every version registered (`mlpipe models register`), found by
    their tags: kept while the model bucket with their artifacts is, deleted with it."""

    kind = "ssm"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, "registry", f"{ctx.names.ssm_prefix}/models/versions/")
        self.retain = ctx.spec.storage.model_bucket.retain_on_destroy

    def _owned(self) -> list[str]:
        names = ("/" + arn.split(":parameter/", 1)[1] for arn in self.ctx.tagged(None, "ssm"))
        return sorted(name for name in names if name.startswith(self.physical))

    def read(self) -> Observed | None:
        owned = self._owned()
        return Observed({"Parameters": owned}) if owned else None

    def desired(self, refs: Refs) -> dict[str, Any]:
        return {}  # registrations are the model commands' to write, never apply's

    def create(self, desired: dict[str, Any]) -> Outputs:
        return {}

    def delete(self, observed: Observed) -> None:
        owned = self._owned()
        for start in range(0, len(owned), 10):  # DeleteParameters takes up to 10 names
            self.client("ssm").delete_parameters(Names=owned[start : start + 10])


def is_registered(meta: dict[str, Any] | None) -> bool:
    """Registered means an artifact was uploaded (or named) and recorded; a seed only declares."""
    return bool(meta and meta.get("registeredAt"))


def version_metadata(ctx: Context, version: str, refs: Refs | None = None) -> dict[str, Any]:
    """A declared version's metadata; registered from its artifact's outputs when it has one."""
    spec = ctx.spec.models
    version_spec = spec.versions[version]
    meta: dict[str, Any] = {
        "version": version,
        "s3Path": f"s3://{ctx.names.model_bucket}/models/{version}/model.tar.gz",
        "image": images.model_image(spec, version, ctx.aws.region),
    }
    if version_spec.baseline:
        meta["performanceBaseline"] = version_spec.baseline.model_dump(exclude_none=True)
    if refs is not None and version in declared(ctx):
        key = artifact_key(version)
        meta.update(
            s3Path=refs(key, "s3Path"),
            sha256=refs(key, "sha256"),
            size=refs(key, "size"),
            registeredAt=datetime.now(UTC).isoformat(),
            registeredBy=ctx.aws.caller_arn,
        )
    return meta


class VersionMetadata(Parameter):
    """A version's metadata. With an artifact in the spec the apply registers the version: the
    value records the uploaded artifact, and a seed written before the artifact was declared is
    completed once (`Registered`); a registered value is never rewritten."""

    def __init__(self, ctx: Context, version: str) -> None:
        super().__init__(
            ctx,
            f"metadata-{version}",
            ctx.names.metadata_param(version),
            "",
            f"Model {version}: artifact, image and performance baseline",
        )
        self.version = version
        self.from_artifact = version in declared(ctx)
        if self.from_artifact:
            self.depends_on = (artifact_key(version),)

    def read(self) -> Observed | None:
        observed = super().read()
        if observed is not None:
            try:
                live = json.loads(observed.state["Value"])
            except ValueError:
                live = None
            registered = is_registered(live if isinstance(live, dict) else None)
            observed.state["Registered"] = registered
        return observed

    def desired(self, refs: Refs) -> dict[str, Any]:
        meta = version_metadata(self.ctx, self.version, refs)
        value = Unknown(f"{self.key}.Value") if contains_unknown(meta) else meta
        return {
            **super().desired(refs),
            "Value": value if isinstance(value, Unknown) else json.dumps(meta, sort_keys=True),
            "Registered": True if self.from_artifact else None,
        }

    def _known(self, desired: dict[str, Any]) -> dict[str, Any]:
        """Without the artifact's outputs (its resource is not in this run), the seed."""
        if isinstance(desired["Value"], Unknown):
            seed = json.dumps(version_metadata(self.ctx, self.version), sort_keys=True)
            return {**desired, "Value": seed}
        return desired

    def create(self, desired: dict[str, Any]) -> Outputs:
        return super().create(self._known(desired))

    def update(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> Outputs:
        if changes.touches("Registered") and not isinstance(desired["Value"], Unknown):
            self.client("ssm").put_parameter(
                Name=self.physical, Value=desired["Value"], Type=desired["Type"], Overwrite=True
            )
        return super().update(observed, desired, changes)


def resources(ctx: Context) -> list[Resource]:
    names = ctx.names
    params: list[Resource] = [
        Parameter(
            ctx,
            "active-version",
            names.active_version_param,
            ctx.spec.models.active_version,
            "Currently active model version for inference",
        ),
        Parameter(
            ctx,
            "deployment",
            names.deployment_param,
            DeploymentState.from_spec(ctx).to_json(),
            "Which model version each endpoint variant serves, and its traffic weight",
        ),
    ]
    registry = Registry(ctx)
    for version in ctx.spec.models.versions:
        metadata = VersionMetadata(ctx, version)
        metadata.retain = registry.retain  # with the registry and the artifacts
        params.append(metadata)
    return [*params, registry]
