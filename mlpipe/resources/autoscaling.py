"""Application Auto Scaling of the endpoint's variants: per variant a scalable target on its
instance count and a target-tracking policy on invocations per instance.

Which variants exist is the deployment state's business, so the resource takes them from a
callable (`mlpipe.resources.sagemaker` assembles the serving resources). The endpoint
reconciler also uses `release` and `register`: AWS refuses an endpoint update that removes a
variant or changes its instance type while the variant is a scalable target, so the endpoint
deregisters those variants first and registers the ones still served once it is InService.

Scalable targets are named by the endpoint and variant (`endpoint/<name>/variant/<variant>`),
both the pipeline's own; they are tagged at registration. A replaced endpoint (created again
after it Failed) loses its targets: the variants' desired state names the endpoint by its
output, unknown while the endpoint is being replaced, so they are registered again after it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from mlpipe.core.context import Context
from mlpipe.core.diff import Diff
from mlpipe.core.find import forget
from mlpipe.core.resource import Observed, Outputs, Refs, Resource
from mlpipe.spec import AutoscalingSpec

SCALING = "autoscaling:endpoint"
NAMESPACE = "sagemaker"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
METRIC = "SageMakerVariantInvocationsPerInstance"
POLICY = "invocations-per-instance"


def resource_id(endpoint: str, variant: str) -> str:
    return f"endpoint/{endpoint}/variant/{variant}"


def settings(spec: AutoscalingSpec) -> dict[str, Any]:
    """One variant's target and policy as the spec wants them, in `live_targets`' shape."""
    return {
        "MinCapacity": spec.min_capacity,
        "MaxCapacity": spec.max_capacity,
        "Policy": {
            "TargetValue": float(spec.target_invocations_per_instance),
            "PredefinedMetricType": METRIC,
            "ScaleInCooldown": spec.scale_in_cooldown_seconds,
            "ScaleOutCooldown": spec.scale_out_cooldown_seconds,
            "DisableScaleIn": False,
        },
    }


def _policy(config: Mapping[str, Any]) -> dict[str, Any]:
    metric = config.get("PredefinedMetricSpecification") or {}
    return {
        "TargetValue": float(config["TargetValue"]),
        "PredefinedMetricType": metric.get("PredefinedMetricType"),
        "ScaleInCooldown": config.get("ScaleInCooldown"),
        "ScaleOutCooldown": config.get("ScaleOutCooldown"),
        "DisableScaleIn": config.get("DisableScaleIn", False),
    }


def _client(ctx: Context) -> Any:
    return ctx.aws.client("application-autoscaling")


def _where(endpoint: str, variant: str) -> dict[str, str]:
    return {
        "ServiceNamespace": NAMESPACE,
        "ResourceId": resource_id(endpoint, variant),
        "ScalableDimension": DIMENSION,
    }


def live_targets(
    ctx: Context, endpoint: str, variants: Iterable[str] | None = None
) -> dict[str, dict[str, Any]]:
    """variant → {MinCapacity, MaxCapacity, Policy} of the endpoint's registered variants
    (all of them, or only those named)."""
    client = _client(ctx)
    params: dict[str, Any] = {"ServiceNamespace": NAMESPACE, "ScalableDimension": DIMENSION}
    if variants is not None:
        params["ResourceIds"] = [resource_id(endpoint, v) for v in variants]
        if not params["ResourceIds"]:
            return {}
    prefix = resource_id(endpoint, "")
    found: dict[str, dict[str, Any]] = {}
    for page in client.get_paginator("describe_scalable_targets").paginate(**params):
        for target in page["ScalableTargets"]:
            if target["ResourceId"].startswith(prefix):
                found[target["ResourceId"].removeprefix(prefix)] = {
                    "MinCapacity": target["MinCapacity"],
                    "MaxCapacity": target["MaxCapacity"],
                    "Policy": None,
                }
    for variant, target in found.items():
        policies = client.describe_scaling_policies(
            **_where(endpoint, variant), PolicyNames=[POLICY]
        )["ScalingPolicies"]
        for policy in policies:
            if policy["PolicyName"] == POLICY and policy["ResourceId"] == resource_id(
                endpoint, variant
            ):
                target["Policy"] = _policy(policy["TargetTrackingScalingPolicyConfiguration"])
    return dict(sorted(found.items()))


def register(
    ctx: Context,
    endpoint: str,
    variants: Iterable[str],
    wanted: Mapping[str, Any],
    tags: Mapping[str, str],
    live: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """Bring each variant's target and policy to `wanted`, calling only for what differs."""
    client, live = _client(ctx), live or {}
    for variant in variants:
        current = live.get(variant)
        where = _where(endpoint, variant)
        bounds = {k: wanted[k] for k in ("MinCapacity", "MaxCapacity")}
        if current is None or any(current[k] != v for k, v in bounds.items()):
            # Tags can only be given when the target is first registered.
            extra = {"Tags": dict(tags)} if current is None else {}
            client.register_scalable_target(**where, **bounds, **extra)
        if current is None or current["Policy"] != wanted["Policy"]:
            policy = wanted["Policy"]
            client.put_scaling_policy(
                PolicyName=POLICY,
                PolicyType="TargetTrackingScaling",
                TargetTrackingScalingPolicyConfiguration={
                    "TargetValue": policy["TargetValue"],
                    "PredefinedMetricSpecification": {
                        "PredefinedMetricType": policy["PredefinedMetricType"]
                    },
                    "ScaleInCooldown": policy["ScaleInCooldown"],
                    "ScaleOutCooldown": policy["ScaleOutCooldown"],
                    "DisableScaleIn": policy["DisableScaleIn"],
                },
                **where,
            )


def _deregister(ctx: Context, endpoint: str, variant: str, target: Mapping[str, Any]) -> None:
    client, where = _client(ctx), _where(endpoint, variant)
    if target.get("Policy") is not None:
        forget(client, "delete_scaling_policy", PolicyName=POLICY, **where)
    forget(client, "deregister_scalable_target", **where)


def release(ctx: Context, endpoint: str, variants: Iterable[str] | None = None) -> list[str]:
    """Deregister the named variants (default: all) that are scalable targets; returns the ones
    that were."""
    live = live_targets(ctx, endpoint, None if variants is None else list(variants))
    for variant, target in live.items():
        _deregister(ctx, endpoint, variant, target)
    return sorted(live)


class VariantScaling(Resource):
    """The scalable targets and policies of every variant the deployment state names."""

    kind = "autoscaling"

    def __init__(
        self, ctx: Context, variants: Callable[[], Sequence[str]], endpoint_key: str
    ) -> None:
        super().__init__(ctx, "endpoint", ctx.names.endpoint, depends_on=(endpoint_key,))
        self.variants = variants
        self.endpoint_key = endpoint_key

    def _outputs(self, variants: Iterable[str]) -> Outputs:
        return {"resource_ids": [resource_id(self.physical, v) for v in variants]}

    def read(self) -> Observed | None:
        live = live_targets(self.ctx, self.physical)
        if not live:
            return None
        state = {"Endpoint": self.physical, "Variants": list(live), "Targets": live}
        return Observed(state, self._outputs(live))

    def desired(self, refs: Refs) -> dict[str, Any]:
        names, wanted = sorted(self.variants()), settings(self.ctx.spec.autoscaling)
        return {
            "Endpoint": refs(self.endpoint_key, "name"),
            "Variants": names,
            "Targets": {name: wanted for name in names},
        }

    def create(self, desired: dict[str, Any]) -> Outputs:
        return self._converge({}, desired)

    def update(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> Outputs:
        # Read again: the endpoint's update releases and registers variants after the plan.
        return self._converge(live_targets(self.ctx, self.physical), desired)

    def _converge(self, live: Mapping[str, Any], desired: dict[str, Any]) -> Outputs:
        for variant in sorted(set(live) - set(desired["Variants"])):
            _deregister(self.ctx, self.physical, variant, live[variant])
        wanted = settings(self.ctx.spec.autoscaling)
        register(self.ctx, self.physical, desired["Variants"], wanted, self.tags, live)
        return self._outputs(desired["Variants"])

    def delete(self, observed: Observed) -> None:
        for variant, target in observed.state["Targets"].items():
            _deregister(self.ctx, self.physical, variant, target)
