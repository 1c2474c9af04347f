"""Model operations benchmark: traffic shift, promote and rollback, both rollback paths.

On a fresh embedded AWS: apply, register the example models v1.0.0 and v2.0.0 (and v3.0.0, a
copy of v2.0.0's archive), then time each operation and count the API calls it makes.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import _common as common

from mlpipe.examples.models import build_examples
from mlpipe.local import moto_ext
from mlpipe.ops import deployments, registry

SAGEMAKER = (
    "UpdateEndpointWeightsAndCapacities",
    "UpdateEndpoint",
    "CreateEndpointConfig",
    "DescribeEndpoint",
)

Operation = Callable[[deployments.Runner], deployments.Transition]

# In order: each starts from the state the previous one left.
OPERATIONS: list[tuple[str, Operation]] = [
    ("traffic 70/30", lambda r: deployments.traffic(r, {"ModelA": 70, "ModelB": 30})),
    ("promote v2.0.0", lambda r: deployments.promote(r, "v2.0.0")),
    ("rollback", lambda r: deployments.rollback(r)),
    ("promote v2.0.0 again", lambda r: deployments.promote(r, "v2.0.0")),
    ("promote v3.0.0", lambda r: deployments.promote(r, "v3.0.0")),
    ("rollback --to v1.0.0", lambda r: deployments.rollback(r, to="v1.0.0")),
]


def one_run(spec: common.Spec, work: Path) -> dict[str, dict[str, float | int]]:
    with common.fresh_pipeline(spec) as pipeline:
        common.run(pipeline)
        ctx, log = pipeline.ctx, pipeline.aws.log
        for example in build_examples(work / "models"):
            registry.register(ctx, example.version, example.path, baseline=example.baseline)
            if example.version == "v2.0.0":
                copy = work / "v3.0.0" / "model.tar.gz"
                copy.parent.mkdir(exist_ok=True)
                shutil.copyfile(example.path, copy)
                registry.register(ctx, "v3.0.0", copy, baseline=example.baseline)
        runner = deployments.Runner(ctx)
        results = {}
        for name, operation in OPERATIONS:
            log.reset()
            started = time.perf_counter()
            outcome = operation(runner)
            wall = time.perf_counter() - started
            counts = log.summary()
            results[name] = {
                "wall_s": wall,
                "op_s": outcome.seconds,
                "calls": len(log.calls),
                "writes": len(log.writes()),
                **{op: counts[f"sagemaker:{op}"] for op in SAGEMAKER},
            }
        return results


def main() -> int:
    args = common.arguments(__doc__.splitlines()[0])
    spec = common.spec(args.spec)
    samples: dict[str, list[dict[str, float | int]]] = {name: [] for name, _ in OPERATIONS}
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as work:
            for name, numbers in one_run(spec, Path(work)).items():
                samples[name].append(numbers)
    medians = {name: common.median(values) for name, values in samples.items()}
    if args.json:
        common.emit_json(
            {
                "endpoint_transition_seconds": moto_ext.ENDPOINT_TRANSITION_SECONDS,
                "repeat": args.repeat,
                "cpus": os.cpu_count(),
                "median": medians,
                "samples": samples,
            }
        )
        return 0
    print(
        f"spec {args.spec.name}; endpoint transition {moto_ext.ENDPOINT_TRANSITION_SECONDS:g} s "
        f"(each endpoint update waits for it); median of {args.repeat} run(s); "
        f"{os.cpu_count()} CPUs"
    )
    short = {
        "UpdateEndpointWeightsAndCapacities": "UpdateWeights",
        "CreateEndpointConfig": "CreateConfig",
    }
    columns = ["wall_s", "op_s", "calls", "writes", *SAGEMAKER]
    rows = [[name, *(numbers[c] for c in columns)] for name, numbers in medians.items()]
    print(common.table(["operation", *(short.get(c, c) for c in columns)], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
