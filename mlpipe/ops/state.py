"""The deployment state: which model version each endpoint variant serves, and its traffic weight.

It lives in one JSON parameter in Parameter Store (`Names.deployment_param`). The first apply
seeds it from the spec; afterwards the model operations write it (`save_state`) and the serving
resources follow it, so an apply never undoes a promotion or a traffic shift. The Lambda
handlers and the batch job read the same JSON (`lambdas/common/inference_common.py`).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mlpipe.context import PipelineContext
from mlpipe.core.errors import MlpipeError
from mlpipe.core.find import find
from mlpipe.spec import EndpointSpec, VariantSpec


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Variant(_Frozen):
    name: str
    version: str
    weight: int = Field(ge=0, le=100, description="percent of the traffic")


class DeploymentState(_Frozen):
    """Which model version each endpoint variant serves, and its traffic weight."""

    variants: tuple[Variant, ...]
    champion: str
    challenger: str | None = None
    # Who wrote this state and why (the operations commands record it; history reads it).
    operation: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> DeploymentState:
        try:  # the spec's rules: variant names, versions, 1 to 10 variants, weights add to 100
            EndpointSpec(variants=[VariantSpec(**v.model_dump()) for v in self.variants])
        except ValidationError as exc:
            raise ValueError(
                "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
            ) from None
        names = [v.name for v in self.variants]
        for role, name in (("champion", self.champion), ("challenger", self.challenger)):
            if name is not None and name not in names:
                raise ValueError(f"{role} {name} is not one of the variants ({', '.join(names)})")
        if self.challenger == self.champion:
            raise ValueError("champion and challenger must be different variants")
        return self

    @classmethod
    def from_spec(cls, ctx: PipelineContext) -> DeploymentState:
        """The state the first apply writes: the spec's variants, the first one champion."""
        variants = ctx.spec.endpoint.variants
        return cls(
            variants=tuple(
                Variant(name=v.name, version=v.version, weight=v.weight) for v in variants
            ),
            champion=variants[0].name,
            challenger=variants[1].name if len(variants) > 1 else None,
        )

    def to_json(self) -> str:
        exclude = {"operation"} if self.operation is None else set()
        return json.dumps(self.model_dump(mode="json", exclude=exclude), sort_keys=True)

    @property
    def versions(self) -> list[str]:
        return sorted({v.version for v in self.variants})

    @property
    def weights(self) -> dict[str, float]:
        """SageMaker's relative weights: variant → fraction of the traffic."""
        return {v.name: round(v.weight / 100, 4) for v in self.variants}


def _parse_state(name: str, value: str) -> DeploymentState:
    """The state parameter `name`'s value; a one-line error saying what is wrong with it."""
    try:
        return DeploymentState.model_validate_json(value)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise MlpipeError(f"parameter {name} is not a valid deployment state: {problems}") from exc


def load_state(ctx: PipelineContext) -> DeploymentState | None:
    """The deployment state in Parameter Store; None before the first apply has written it."""
    name = ctx.names.deployment_param
    found = find(ctx.aws.client("ssm"), "get_parameter", Name=name)
    return None if found is None else _parse_state(name, found["Parameter"]["Value"])


def save_state(ctx: PipelineContext, state: DeploymentState) -> None:
    """Write the deployment state; `mlpipe.ops.deploy` (or the next apply) makes the endpoint
    follow it."""
    ctx.aws.client("ssm").put_parameter(
        Name=ctx.names.deployment_param, Value=state.to_json(), Type="String", Overwrite=True
    )
