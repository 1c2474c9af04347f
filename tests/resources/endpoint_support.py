"""Helpers for the SageMaker endpoint and autoscaling tests: time that passes only when the
endpoint waits, the resource set, live reads."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from mlpipe.core.context import Context
from mlpipe.core.executor import Report
from mlpipe.core.resource import Resource
from mlpipe.local import moto_ext
from mlpipe.ops.state import DeploymentState, Variant
from mlpipe.resources import artifacts, iam, kms, monitoring, network, s3, sagemaker, ssm
from tests.fake_time import FakeTime
from tests.resources.serving import needed
from tests.support import Shared, build_once, converge

REGION = "us-east-1"
# How long moto's endpoints stay Creating/Updating, in fake seconds.
TRANSITION_SECONDS = 60.0


def fake_time(monkeypatch: pytest.MonkeyPatch, ctx: Context) -> FakeTime:
    """The run's clock (`ctx.clock`, a `FakeTime`) drives moto's endpoints too: they change
    state as mlpipe's waits move it on."""
    time = ctx.clock.now
    assert isinstance(time, FakeTime)
    monkeypatch.setattr(moto_ext, "clock", time)
    monkeypatch.setattr(moto_ext, "ENDPOINT_TRANSITION_SECONDS", TRANSITION_SECONDS)
    return time


def resources(ctx: Context) -> list[Resource]:
    """The serving resources and everything they depend on."""
    modules = (kms, s3, artifacts, ssm, iam, network, sagemaker)
    return [r for m in modules for r in m.resources(ctx)]


def serving(ctx: Context) -> list[Resource]:
    """SageMaker serving (models, endpoint, autoscaling, its log group) and only what it
    depends on: key, buckets, artifacts, parameters, its role, subnets and group."""
    return needed(sagemaker.resources(ctx), resources(ctx))


def client(service: str) -> Any:
    """A client outside mlpipe's call log, for reading and for changes behind its back."""
    return boto3.client(service, region_name=REGION)


def state(*variants: tuple[str, str, int]) -> DeploymentState:
    """A deployment state from (variant, version, weight); the first variant is champion."""
    return DeploymentState(
        variants=tuple(Variant(name=n, version=v, weight=w) for n, v, w in variants),
        champion=variants[0][0],
        challenger=variants[1][0] if len(variants) > 1 else None,
    )


def endpoint(ctx: Context) -> dict[str, Any]:
    return client("sagemaker").describe_endpoint(EndpointName=ctx.names.endpoint)


def live_config(ctx: Context) -> dict[str, Any]:
    sm = client("sagemaker")
    return sm.describe_endpoint_config(EndpointConfigName=endpoint(ctx)["EndpointConfigName"])


def weights(ctx: Context) -> dict[str, float]:
    return {v["VariantName"]: v["DesiredWeight"] for v in endpoint(ctx)["ProductionVariants"]}


def configs(ctx: Context) -> list[str]:
    listed = client("sagemaker").list_endpoint_configs(
        NameContains=ctx.names.endpoint_config_prefix
    )["EndpointConfigs"]
    return sorted(c["EndpointConfigName"] for c in listed)


def targets(ctx: Context) -> dict[str, tuple[int, int]]:
    """variant → (min, max) of the endpoint's scalable targets."""
    prefix = f"endpoint/{ctx.names.endpoint}/variant/"
    found = client("application-autoscaling").describe_scalable_targets(
        ServiceNamespace="sagemaker"
    )["ScalableTargets"]
    return {
        t["ResourceId"].removeprefix(prefix): (t["MinCapacity"], t["MaxCapacity"])
        for t in found
        if t["ResourceId"].startswith(prefix)
    }


def build_serving(factory: pytest.TempPathFactory) -> Shared[Report]:
    """The serving resources and the alarms, applied once on an account of their own: the spec
    names the artifacts of v1.0.0 and v2.0.0, which the apply registers."""
    return build_once(
        factory.mktemp("built"),
        lambda ctx: converge([*resources(ctx), *monitoring.resources(ctx)]),
        fake_time,
    )
