"""Apply benchmark: first apply, converged second apply, parallelism 1 vs 8, destroy.

Every run is on a fresh embedded AWS in this process. Exits 1 if a second apply writes.
"""

from __future__ import annotations

import os
import statistics
import sys

import _common as common

from mlpipe.local import moto_ext

ROWS = {
    "cold": "first apply, cold process",
    "first": "first apply",
    "second": "second apply",
    "serial": "first apply, parallelism 1",
    "destroy": "destroy --force",
}


def default_round(spec: common.Spec) -> dict[str, common.Run]:
    """Parallelism 8 (the default): first apply, second apply, destroy."""
    with common.fresh_pipeline(spec) as pipeline:
        first = common.run(pipeline)
        second = common.run(pipeline)
        destroy = common.run(pipeline, destroy=True)
    return {"first": first, "second": second, "destroy": destroy}


def serial_round(spec: common.Spec) -> dict[str, common.Run]:
    with common.fresh_pipeline(spec) as pipeline:
        return {"serial": common.run(pipeline, parallelism=1)}


def main() -> int:
    args = common.arguments(__doc__.splitlines()[0])
    spec = common.spec(args.spec)
    # The process's first apply pays one-time imports and warm-ups: reported, not compared.
    with common.fresh_pipeline(spec) as pipeline:
        cold = common.run(pipeline)
    samples: dict[str, list[dict[str, float | int]]] = {key: [] for key in ROWS}
    samples["cold"].append(cold.numbers())
    ratios: dict[str, list[float]] = {"apply": [], "execute": []}
    for index in range(args.repeat):
        rounds = (default_round, serial_round) if index % 2 == 0 else (serial_round, default_round)
        runs = {key: value for measure in rounds for key, value in measure(spec).items()}
        for key, value in runs.items():
            samples[key].append(value.numbers())
        ratios["apply"].append(runs["serial"].wall_s / runs["first"].wall_s)
        ratios["execute"].append(runs["serial"].execute_s / runs["first"].execute_s)

    medians = {key: common.median(values) for key, values in samples.items()}
    ratio = {key: statistics.median(values) for key, values in ratios.items()}
    second_writes = max(s["writes"] for s in samples["second"])
    if args.json:
        common.emit_json(
            {
                "endpoint_transition_seconds": moto_ext.ENDPOINT_TRANSITION_SECONDS,
                "repeat": args.repeat,
                "cpus": os.cpu_count(),
                "median": medians,
                "parallelism_1_vs_8": ratio,
                "second_apply_writes_max": second_writes,
                "samples": samples,
            }
        )
    else:
        print(
            f"spec {args.spec.name}; endpoint transition "
            f"{moto_ext.ENDPOINT_TRANSITION_SECONDS:g} s; median of {args.repeat} run(s); "
            f"{os.cpu_count()} CPUs"
        )
        columns = ("wall_s", "plan_s", "execute_s", "calls", "writes", "reads", "changed")
        rows = [[label, *(medians[key][c] for c in columns)] for key, label in ROWS.items()]
        print(common.table(["phase", *columns], rows))
        print(f"resources created by the first apply: {medians['first']['changed']}")
        print(f"second apply write calls: {second_writes}")
        print(
            f"parallelism 1 / 8 wall time: apply {ratio['apply']:.2f}x, "
            f"execute {ratio['execute']:.2f}x"
        )
    if second_writes:
        print(f"error: a second apply made {second_writes} write call(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
