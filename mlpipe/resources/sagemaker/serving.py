"""What the serving resources follow: the deployment state (`mlpipe.ops.state`) and the
metadata of the versions it serves, read again whenever a resource needs them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from mlpipe.core.context import Context
from mlpipe.core.errors import MlpipeError
from mlpipe.core.resource import Resource
from mlpipe.ops.state import DeploymentState, load_state
from mlpipe.resources import artifacts, iam, network, s3, ssm

MODELS = "sagemaker:models"
ENDPOINT = "sagemaker:endpoint"
DEPLOYMENT = f"{ssm.Parameter.kind}:deployment"
MODEL_BUCKET = f"{s3.Bucket.kind}:models"
ROLE = iam.role_key("sagemaker")
ENDPOINT_LOGS = "logs:endpoint"


class Serving:
    """Where the desired deployment comes from: a given state, else the parameter, else (before
    the first apply has written the parameter) the spec."""

    def __init__(self, ctx: Context, state: DeploymentState | None = None) -> None:
        self.ctx = ctx
        self.given = state

    def state(self) -> DeploymentState:
        return self.given or load_state(self.ctx) or DeploymentState.from_spec(self.ctx)

    def metadata(self, versions: Sequence[str]) -> dict[str, dict[str, Any]]:
        """version → its metadata parameter (JSON: version, s3Path, image, ...), for the versions
        that are registered or that this apply registers (the spec declares their artifact: the
        s3Path is then the artifact's output). A version that is neither is left out."""
        names = {self.ctx.names.metadata_param(v): v for v in versions}
        found: dict[str, dict[str, Any]] = {}
        if names:
            params = self.ctx.aws.client("ssm").get_parameters(Names=list(names))["Parameters"]
            for param in params:
                try:
                    found[names[param["Name"]]] = json.loads(param["Value"])
                except ValueError as exc:
                    raise MlpipeError(f"parameter {param['Name']} is not JSON: {exc}") from exc
        for version in names.values():
            if ssm.is_registered(found.get(version)):
                continue
            if version in artifacts.declared(self.ctx):
                found[version] = ssm.version_metadata(self.ctx, version)
            else:
                found.pop(version, None)
        return found


class Served(Resource):
    """A resource whose desired state follows the deployment state."""

    kind = "sagemaker"

    def __init__(
        self, ctx: Context, name: str, physical: str, serving: Serving, depends_on: tuple[str, ...]
    ) -> None:
        super().__init__(ctx, name, physical, depends_on)
        self.serving = serving


def network_keys(ctx: Context) -> tuple[str, ...]:
    """The isolated subnets and the security group the models run in."""
    return (network.SG_SAGEMAKER, *network.subnet_keys(ctx.spec))
