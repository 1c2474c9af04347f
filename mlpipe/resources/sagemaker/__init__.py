"""SageMaker serving: one Model per model version (`models`), immutable endpoint configs and
the endpoint (`endpoint`), all following the deployment state (`mlpipe.ops.state`).

The first apply seeds the state from the spec (`ssm:deployment`); afterwards the model
operations commands write it and deploy it (`mlpipe.ops.deploy`) with these same reconcilers,
so an apply never undoes a promotion or a traffic shift.
"""

from __future__ import annotations

from mlpipe.core.context import Context
from mlpipe.core.resource import Resource
from mlpipe.ops.state import DeploymentState, Variant, load_state, save_state
from mlpipe.resources import autoscaling
from mlpipe.resources.logs import LogGroup
from mlpipe.resources.sagemaker.endpoint import Endpoint, local_storage
from mlpipe.resources.sagemaker.models import Models
from mlpipe.resources.sagemaker.serving import ENDPOINT, MODELS, Serving

# The deployment state's names stay importable from here, beside the resources that follow it.
__all__ = [
    "ENDPOINT",
    "MODELS",
    "DeploymentState",
    "Endpoint",
    "Models",
    "Serving",
    "Variant",
    "load_state",
    "local_storage",
    "resources",
    "save_state",
    "serving_resources",
]


def serving_resources(
    ctx: Context, state: DeploymentState | None = None, timeout: float | None = None
) -> list[Resource]:
    """Models, endpoint and autoscaling, following `state` (default: Parameter Store)."""
    serving = Serving(ctx, state)
    return [
        Models(ctx, serving),
        Endpoint(ctx, serving, timeout),
        autoscaling.VariantScaling(
            ctx, lambda: [v.name for v in serving.state().variants], ENDPOINT
        ),
    ]


def resources(ctx: Context) -> list[Resource]:
    # The group SageMaker writes the endpoint's container logs to, created by mlpipe first so
    # it has the pipeline's key, retention and tags, and destroy removes it.
    group = LogGroup(
        ctx,
        "endpoint",
        f"/aws/sagemaker/Endpoints/{ctx.names.endpoint}",
        ctx.spec.monitoring.log_retention_days,
    )
    return [group, *serving_resources(ctx)]
