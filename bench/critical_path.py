"""Apply, destroy, promote and rollback on AWS's clock, against their critical paths.

The embedded AWS runs under the latency profile of ``mlpipe.local.latency`` (a round trip per
call, the provisioning time AWS shows per call, all scaled by 1/--scale). For each run the
table shows the wall time, the critical path of mlpipe's dependency graph (``depends_on``), the
critical path of the graph AWS forces, and the wall time projected to AWS's clock.

Each resource's weight is its own measured time in the run (its calls, held as the profile
says). An edge is forced by AWS when the dependent's desired state needs an output of the
dependency (an ID or ARN only it has), or when AWS refuses the dependent's call before the
dependency is ready (``AWS_ORDER``, each with its reason). Every other edge is listed, with
how much it lengthens the critical path.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterable, Mapping
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

import _common as common

from mlpipe.core.diff import contains_unknown
from mlpipe.core.executor import Report
from mlpipe.core.resource import Refs
from mlpipe.local import latency, moto_ext
from mlpipe.ops import deployments
from mlpipe.pipeline import Pipeline

# Edges that carry no output but that AWS still needs, dependent -> dependency: why.
AWS_ORDER: dict[tuple[str, str], str] = {
    ("apigateway:stage", "apigateway:account"): (
        "a stage with execution logging is refused until the account has a CloudWatch Logs "
        "role (docs.aws.amazon.com/apigateway/latest/developerguide/set-up-logging.html)"
    ),
    ("batch:queue", "batch:compute"): (
        "CreateJobQueue refuses a compute environment that is not VALID "
        "(docs.aws.amazon.com/batch/latest/APIReference/API_CreateJobQueue.html)"
    ),
    ("sagemaker:endpoint", "sagemaker:models"): (
        "CreateEndpointConfig names models that must exist "
        "(docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateEndpointConfig.html)"
    ),
    ("sagemaker:endpoint", "s3:models"): (
        "the endpoint's instances download each model's artifacts from the model bucket, which "
        "must be in the endpoint's region; the endpoint fails without them "
        "(docs.aws.amazon.com/sagemaker/latest/APIReference/API_ContainerDefinition.html, "
        "ModelDataUrl)"
    ),
    ("autoscaling:endpoint", "sagemaker:endpoint"): (
        "RegisterScalableTarget refuses a variant of an endpoint that is not InService "
        "(docs.aws.amazon.com/sagemaker/latest/dg/endpoint-auto-scaling-add-policy.html)"
    ),
    ("lambda:stream-mapping", "lambda:stream-processor"): (
        "CreateEventSourceMapping needs the function to exist"
    ),
    ("lambda:stream-mapping", "kinesis:stream"): (
        "CreateEventSourceMapping needs an ACTIVE stream"
    ),
    ("lambda:api-permission", "lambda:preprocess"): "AddPermission needs the function to exist",
    ("states:batch-workflow", "logs:workflow"): (
        "CreateStateMachine validates its logging destination "
        "(docs.aws.amazon.com/step-functions/latest/apireference/API_CreateStateMachine.html)"
    ),
}


# The same by key prefix (every model version, every logged bucket): (after, before) -> why.
AWS_ORDER_BY_PREFIX: dict[tuple[str, str], str] = {
    ("sagemaker:models", "artifact:"): (
        "CreateModel refuses a ModelDataUrl that is not in S3 yet: 'Could not find model data' "
        "(docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateModel.html)"
    ),
    ("sagemaker:models", "ssm:metadata-"): (
        "a version's model is created from its registered metadata (artifact URL, image)"
    ),
    ("artifact:", "s3:models"): "PutObject needs the bucket to exist",
    ("s3:", "s3:access-logs"): (
        "PutBucketLogging refuses a target bucket that does not exist "
        "(docs.aws.amazon.com/AmazonS3/latest/API/API_PutBucketLogging.html)"
    ),
}


def _ordered(dependent: str, dependency: str) -> bool:
    return (dependent, dependency) in AWS_ORDER or any(
        dependent.startswith(after) and dependency.startswith(before)
        for after, before in AWS_ORDER_BY_PREFIX
    )


def forced_edges(pipeline: Pipeline, outputs: Mapping[str, Any]) -> set[tuple[str, str]]:
    """Edges AWS forces: the dependent's desired state needs the dependency's outputs (it
    has an Unknown without them), or ``AWS_ORDER`` names it."""
    forced = set()
    for resource in pipeline.resources():
        for dependency in resource.depends_on:
            known = {k: v for k, v in outputs.items() if k != dependency}
            if _ordered(resource.key, dependency) or contains_unknown(
                resource.desired(Refs(known))
            ):
                forced.add((resource.key, dependency))
    return forced


def longest_path(weights: Mapping[str, float], edges: Iterable[tuple[str, str]]) -> float:
    """The critical path's length: the heaviest chain of resources where each waits for the
    one before it (edges are (after, before))."""
    return critical_chain(weights, edges)[0]


def critical_chain(
    weights: Mapping[str, float], edges: Iterable[tuple[str, str]]
) -> tuple[float, list[str]]:
    """The critical path: its length and its resources, first to last."""
    before: dict[str, set[str]] = {key: set() for key in weights}
    for after, first in edges:
        if after in weights and first in weights:
            before[after].add(first)
    finish: dict[str, float] = {}
    previous: dict[str, str | None] = {}
    for key in TopologicalSorter(before).static_order():
        start, previous[key] = max(((finish[d], d) for d in before[key]), default=(0.0, None))
        finish[key] = weights[key] + start
    if not finish:
        return 0.0, []
    last: str | None = max(finish, key=lambda k: finish[k])
    chain = []
    while last is not None:
        chain.append(last)
        last = previous[last]
    return max(finish.values()), chain[::-1]


def timed(pipeline: Pipeline, destroy: bool = False) -> tuple[float, float, Report]:
    started = time.perf_counter()
    plan = pipeline.destroy_plan(force=True) if destroy else pipeline.plan()
    planned = time.perf_counter()
    report = pipeline.execute(plan)
    if not report.ok:
        sys.exit(f"{'destroy' if destroy else 'apply'} failed under the profile")
    return planned - started, time.perf_counter() - planned, report


def operation_row(
    name: str, pipeline: Pipeline, run: Any, profile: latency.Profile, scale: float
) -> list[Any]:
    """An operation is one chain of calls: both bounds are the sum of its calls' times."""
    latency.install(profile)  # also forgets the calls held so far
    started = time.perf_counter()
    run(deployments.Runner(pipeline.ctx))
    wall = time.perf_counter() - started
    chain = sum(seconds for _, _, seconds in latency.calls())
    return row(name, wall, chain, chain, scale)


def row(name: str, wall: float, dag: float, aws: float, scale: float) -> list[Any]:
    return [name, wall, dag, aws, f"{wall / aws:.2f}x", wall * scale / 60]


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=common.SPEC_PATH, help="pipeline spec")
    parser.add_argument(
        "--scale", type=float, default=300.0, help="AWS seconds per second of this run"
    )
    return parser.parse_args()


def main() -> int:
    args = arguments()
    spec = common.spec(args.spec)
    profile = latency.Profile(factor=1 / args.scale)
    moto_ext.ENDPOINT_TRANSITION_SECONDS = 0.0  # the held CreateEndpoint answer is the wait
    with common.fresh_pipeline(spec) as pipeline:  # warm-up: imports, parsed service models
        common.run(pipeline)
    rows: list[list[Any]] = []
    with common.fresh_pipeline(spec) as pipeline:
        latency.install(profile)
        plan_s, execute_s, report = timed(pipeline)
        weights = {key: o.seconds for key, o in report.outcomes.items()}
        edges = {(r.key, d) for r in pipeline.resources() for d in r.depends_on}
        forced = forced_edges(pipeline, report.outputs)
        dag, aws = longest_path(weights, edges), longest_path(weights, forced)
        rows.append(row("apply", execute_s, dag, aws, args.scale))
        unforced = [
            ("apply", after, before, dag - longest_path(weights, edges - {(after, before)}))
            for after, before in edges - forced
        ]

        latency.install(None)  # the apply registered the spec's artifacts (v1.0.0, v2.0.0)
        promote = lambda r: deployments.promote(r, "v2.0.0")  # noqa: E731
        rows.append(operation_row("promote v2.0.0", pipeline, promote, profile, args.scale))
        rollback = lambda r: deployments.rollback(r)  # noqa: E731
        rows.append(operation_row("rollback", pipeline, rollback, profile, args.scale))

        latency.install(profile)
        _, destroy_s, destroyed = timed(pipeline, destroy=True)
        latency.install(None)
        d_weights = {key: o.seconds for key, o in destroyed.outcomes.items()}
        reverse = {(b, a) for a, b in edges}
        d_dag = longest_path(d_weights, reverse)
        d_aws = longest_path(d_weights, {(b, a) for a, b in forced})
        rows.append(row("destroy", destroy_s, d_dag, d_aws, args.scale))
        unforced += [
            ("destroy", after, before, d_dag - longest_path(d_weights, reverse - {(before, after)}))
            for after, before in edges - forced
        ]
        paths = {
            "apply": critical_chain(weights, forced),
            "destroy": critical_chain(d_weights, {(b, a) for a, b in forced}),
        }
        weights_of = {"apply": weights, "destroy": d_weights}

    print(
        f"spec {args.spec.name}; AWS's durations / {args.scale:g} "
        f"(python -m mlpipe.local.latency lists them); {os.cpu_count()} CPUs; "
        f"apply's plan (reads only) took {plan_s:.3f} s, not in the table"
    )
    header = ["run", "wall_s", "dag_bound_s", "aws_forced_s", "wall/forced", "projected_min"]
    print(common.table(header, rows))
    for name, (length, chain) in paths.items():
        steps = " -> ".join(f"{key} {weights_of[name][key]:.2f}" for key in chain)
        print(f"{name} critical path ({length:.3f} s): {steps}")
    print(f"depends_on edges AWS does not force: {len(unforced)}")
    for run_name, after, before, longer in sorted(unforced, key=lambda e: -e[3]):
        if longer > 1e-9:
            print(f"  {run_name}: {after} -> {before} lengthens the path by {longer:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
