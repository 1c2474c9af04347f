"""Application Auto Scaling of the endpoint's variants on moto: targets, policies, drift, and
variants coming and going with the deployment state."""

from __future__ import annotations

from typing import Any

import pytest

from mlpipe.core.context import Context
from mlpipe.core.executor import Report, execute
from mlpipe.core.plan import Action, plan_apply, plan_destroy
from mlpipe.resources import autoscaling, sagemaker
from mlpipe.resources.autoscaling import DIMENSION, METRIC, POLICY, SCALING
from mlpipe.resources.sagemaker import ENDPOINT, save_state
from tests.resources.endpoint_support import (
    FakeTime,
    client,
    endpoint,
    fake_time,
    serving,
    state,
    targets,
    weights,
)
from tests.support import Shared, build_once, converge


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch, ctx: Context) -> FakeTime:
    return fake_time(monkeypatch, ctx)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Shared[Report]:
    return build_once(
        tmp_path_factory.mktemp("built"), lambda ctx: converge(serving(ctx)), fake_time
    )


@pytest.fixture
def applied(ctx: Context, clock: FakeTime, built: Shared[Report]) -> Context:
    """The stack applied: a copy of the account one converge built for the module."""
    built.restore()
    return ctx


def policies(ctx: Context) -> dict[str, dict[str, Any]]:
    prefix = f"endpoint/{ctx.names.endpoint}/variant/"
    found = client("application-autoscaling").describe_scaling_policies(
        ServiceNamespace="sagemaker"
    )["ScalingPolicies"]
    return {p["ResourceId"].removeprefix(prefix): p for p in found}


def step(ctx: Context, key: str) -> Any:
    return next(s for s in plan_apply(serving(ctx)).steps if s.key == key)


def test_each_variant_scales_on_invocations_per_instance(applied: Context):
    assert targets(applied) == {"ModelA": (1, 10), "ModelB": (1, 10)}
    found = policies(applied)
    assert sorted(found) == ["ModelA", "ModelB"]
    for policy in found.values():
        assert policy["PolicyName"] == POLICY
        assert policy["PolicyType"] == "TargetTrackingScaling"
        assert policy["ScalableDimension"] == DIMENSION
        assert policy["TargetTrackingScalingPolicyConfiguration"] == {
            "TargetValue": 1000.0,
            "PredefinedMetricSpecification": {"PredefinedMetricType": METRIC},
            "ScaleInCooldown": 300,
            "ScaleOutCooldown": 60,
            "DisableScaleIn": False,
        }


def test_target_drift_is_repaired_and_a_deleted_policy_is_put_back(applied: Context):
    ctx = applied
    scaling = client("application-autoscaling")
    scaling.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=autoscaling.resource_id(ctx.names.endpoint, "ModelA"),
        ScalableDimension=DIMENSION,
        MinCapacity=1,
        MaxCapacity=3,
    )
    scaling.delete_scaling_policy(
        PolicyName=POLICY,
        ServiceNamespace="sagemaker",
        ResourceId=autoscaling.resource_id(ctx.names.endpoint, "ModelB"),
        ScalableDimension=DIMENSION,
    )

    drifted = step(ctx, SCALING)
    assert drifted.action is Action.UPDATE
    assert drifted.diff.paths() == ["Targets.ModelA.MaxCapacity", "Targets.ModelB.Policy"]
    ctx.aws.log.reset()
    converge(serving(ctx))

    assert targets(ctx)["ModelA"] == (1, 10)
    assert sorted(policies(ctx)) == ["ModelA", "ModelB"]
    # The target alone is registered again, the policy alone put back.
    assert ctx.aws.log.writes() == [
        "application-autoscaling:RegisterScalableTarget",
        "application-autoscaling:PutScalingPolicy",
    ]


def test_a_variant_leaving_is_deregistered_before_the_endpoint_update(applied: Context):
    ctx = applied
    save_state(ctx, state(("ModelA", "v1.0.0", 100)))
    ctx.aws.log.reset()

    converge(serving(ctx))

    calls = ctx.aws.log.calls
    deregistered = calls.index("application-autoscaling:DeregisterScalableTarget")
    assert deregistered < calls.index("sagemaker:UpdateEndpoint")
    assert calls.count("application-autoscaling:DeregisterScalableTarget") == 1
    assert targets(ctx) == {"ModelA": (1, 10)}
    assert sorted(policies(ctx)) == ["ModelA"]
    # Weights are relative: the sole variant takes all the traffic with its retained weight.
    assert weights(ctx) == {"ModelA": 0.8}
    assert not plan_apply(serving(ctx)).changes


def test_a_variant_joining_is_registered_once_the_endpoint_serves_it(applied: Context):
    ctx = applied
    save_state(
        ctx, state(("ModelA", "v1.0.0", 70), ("ModelB", "v2.0.0", 20), ("ModelC", "v2.0.0", 10))
    )

    plan = plan_apply(serving(ctx))
    assert {s.key: s.action for s in plan.changes} == {
        ENDPOINT: Action.UPDATE,
        SCALING: Action.UPDATE,
    }
    assert execute(plan).ok

    assert targets(ctx) == {"ModelA": (1, 10), "ModelB": (1, 10), "ModelC": (1, 10)}
    assert weights(ctx) == {"ModelA": 0.7, "ModelB": 0.2, "ModelC": 0.1}
    assert endpoint(ctx)["EndpointStatus"] == "InService"
    assert not plan_apply(serving(ctx)).changes


def test_destroy_deregisters_every_variant(applied: Context):
    ctx = applied
    scaling = [r for r in serving(ctx) if r.key == SCALING]
    plan = plan_destroy(scaling)
    assert [(s.key, s.action) for s in plan.steps] == [(SCALING, Action.DELETE)]
    assert execute(plan).ok
    assert targets(ctx) == {}
    assert policies(ctx) == {}
    assert sagemaker.ENDPOINT in {r.key for r in serving(ctx)}
