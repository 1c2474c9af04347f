"""Deploy a deployment state: the apply's own reconcilers, run for the serving resources only.

The key, bucket, role and network the serving resources use must exist; a partial plan reads
them for their outputs and never changes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlpipe.context import PipelineContext
from mlpipe.core.errors import MlpipeError
from mlpipe.core.executor import Report, Status, execute
from mlpipe.core.plan import Plan, plan_apply
from mlpipe.core.resource import Outputs
from mlpipe.ops.state import DeploymentState
from mlpipe.resources import iam, kms, network, s3
from mlpipe.resources.sagemaker import serving_resources
from mlpipe.resources.sagemaker.serving import ENDPOINT, MODEL_BUCKET, ROLE, network_keys


@dataclass(frozen=True)
class DeployResult:
    plan: Plan
    report: Report
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.report.ok

    @property
    def endpoint(self) -> Outputs:
        """The endpoint's outputs after the run: name, arn, live config."""
        return self.report.outputs.get(ENDPOINT, {})


def deploy(
    ctx: PipelineContext, state: DeploymentState, *, timeout: float | None = None
) -> DeployResult:
    """Make the endpoint serve `state` (already saved with `save_state`)."""
    serving = serving_resources(ctx, state, timeout)
    used = (kms.KEY, MODEL_BUCKET, ROLE, network.VPC, *network_keys(ctx))
    support = [
        r for module in (kms, s3, iam, network) for r in module.resources(ctx) if r.key in used
    ]
    plan = plan_apply([*support, *serving], only={r.key for r in serving})
    missing = [s.blocked for s in plan.steps if s.resource in support and s.blocked]
    if missing:
        raise MlpipeError("; ".join(str(m) for m in missing))
    report = execute(plan)
    errors = {
        key: outcome.error or "skipped: a dependency failed"
        for key, outcome in report.outcomes.items()
        if outcome.status in (Status.FAILED, Status.SKIPPED)
    }
    return DeployResult(plan, report, errors)
