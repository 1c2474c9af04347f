"""Helpers for the serving tests: the resource sets, a spec variant, live reads."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import boto3

from mlpipe.core.context import Context
from mlpipe.core.executor import execute
from mlpipe.core.plan import Action, Plan, plan_apply, plan_destroy
from mlpipe.core.resource import Resource
from mlpipe.resources import (
    api,
    api_access,
    artifacts,
    dynamodb,
    iam,
    kinesis,
    kms,
    lambdas,
    network,
    s3,
    ssm,
)

REGION = "us-east-1"
ACCOUNT = "123456789012"


def client(service: str) -> Any:
    """A client outside mlpipe's call log, for reading and for drift behind mlpipe's back."""
    return boto3.client(service, region_name=REGION)


def foundation(ctx: Context) -> list[Resource]:
    return [r for m in (kms, s3, artifacts, iam, dynamodb, ssm, network) for r in m.resources(ctx)]


def serving(ctx: Context) -> list[Resource]:
    return [r for m in (lambdas, kinesis, api, api_access) for r in m.resources(ctx)]


def everything(ctx: Context) -> list[Resource]:
    return [*foundation(ctx), *serving(ctx)]


def needed(targets: Sequence[Resource], pool: Sequence[Resource]) -> list[Resource]:
    """`targets` after what they depend on in `pool`, transitively, in `pool`'s order: the
    smallest set whose plan knows every output the targets refer to (a test of the targets
    then builds and reads no more than that)."""
    by_key = {r.key: r for r in pool}
    wanted = {r.key for r in targets}
    found: set[str] = set()
    todo = [d for r in targets for d in r.depends_on]
    while todo:
        key = todo.pop()
        if key in by_key and key not in found | wanted:
            found.add(key)
            todo.extend(by_key[key].depends_on)
    return [*(r for r in pool if r.key in found), *targets]


def with_spec(ctx: Context, section: str, **changes: Any) -> Context:
    """The same run context (same AWS, same call log) with one spec section changed; `section`
    is a dotted path, e.g. `with_spec(ctx, "api.cache", ttl_seconds=60)`."""
    spec = ctx.spec
    path = section.split(".")
    models = [spec]
    for name in path:
        models.append(getattr(models[-1], name))
    updated = models[-1].model_copy(update=changes)
    for name, parent in zip(reversed(path), reversed(models[:-1]), strict=True):
        updated = parent.model_copy(update={name: updated})
    return dataclasses.replace(ctx, spec=updated)


def step_paths(plan: Plan) -> dict[str, tuple[Action, list[str]]]:
    return {s.key: (s.action, s.diff.paths()) for s in plan.changes}


def apply(resources: list[Resource]) -> Plan:
    plan = plan_apply(resources)
    report = execute(plan)
    assert report.ok, {k: o.error for k, o in report.outcomes.items() if o.error}
    return plan


def destroy(resources: list[Resource]) -> Plan:
    plan = plan_destroy(resources, force=True)
    report = execute(plan)
    assert report.ok, {k: o.error for k, o in report.outcomes.items() if o.error}
    return plan
