"""What both benchmarks share: a fresh embedded AWS, timed plan/execute runs, medians, tables."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlpipe.core.clients import AwsTarget
from mlpipe.core.executor import Status
from mlpipe.local import moto_ext
from mlpipe.local.server import LocalAws
from mlpipe.pipeline import Pipeline
from mlpipe.spec import Spec, load_spec

ROOT = Path(__file__).resolve().parents[1]
SPEC_PATH = ROOT / "config" / "pipeline.yaml"
DEFAULT_ENDPOINT_DELAY = 0.5


def arguments(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--repeat", type=int, default=1, help="runs; the median is shown")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--spec", type=Path, default=SPEC_PATH, help="pipeline spec")
    parser.add_argument(
        "--endpoint-delay",
        type=float,
        default=DEFAULT_ENDPOINT_DELAY,
        help="seconds the embedded SageMaker endpoints stay Creating/Updating",
    )
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    moto_ext.ENDPOINT_TRANSITION_SECONDS = args.endpoint_delay
    return args


def spec(path: Path) -> Spec:
    return load_spec(path)


@contextlib.contextmanager
def fresh_pipeline(the_spec: Spec) -> Iterator[Pipeline]:
    """A pipeline on a new embedded AWS with nothing in it.

    moto keeps its state per process, not per server: it is reset so that every run starts empty.
    The embedded AWS's consistency windows are off: they last real seconds, and the latency
    profile already counts those waits on AWS's (scaled) clock (IAM propagation, functions
    Pending, network interfaces released).
    """
    windows = {name: os.environ.get(name) for name in WINDOWS}
    os.environ.update(dict.fromkeys(WINDOWS, "0"))
    try:
        with LocalAws(port=0) as local:
            reset = urllib.request.Request(f"{local.endpoint_url}/moto-api/reset", method="POST")
            urllib.request.build_opener(urllib.request.ProxyHandler({})).open(reset, timeout=10)
            yield Pipeline.connect(the_spec, AwsTarget(endpoint_url=local.endpoint_url, local=True))
    finally:
        for name, value in windows.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


WINDOWS = tuple(
    f"MLPIPE_LOCAL_{name}_WINDOW"
    for name in ("ROLE", "BACKUPS", "ENDPOINT_CONFIG", "MODEL_DATA", "APIGATEWAY", "ENI_RELEASE")
)


@dataclass
class Run:
    """One apply or destroy: plan and execute times, API calls, resources acted on."""

    plan_s: float
    execute_s: float
    calls: int
    writes: int
    changed: int

    @property
    def wall_s(self) -> float:
        return self.plan_s + self.execute_s

    def numbers(self) -> dict[str, float | int]:
        return {
            "wall_s": self.wall_s,
            "plan_s": self.plan_s,
            "execute_s": self.execute_s,
            "calls": self.calls,
            "writes": self.writes,
            "reads": self.calls - self.writes,
            "changed": self.changed,
        }


def run(pipeline: Pipeline, parallelism: int = 8, destroy: bool = False) -> Run:
    """Plan and execute an apply (or a forced destroy) as `mlpipe apply --yes` does; time both."""
    log = pipeline.aws.log
    log.reset()
    started = time.perf_counter()
    if destroy:
        plan = pipeline.destroy_plan(force=True, parallelism=parallelism)
    else:
        plan = pipeline.plan(parallelism)
    planned = time.perf_counter()
    report = pipeline.execute(plan, parallelism)
    finished = time.perf_counter()
    if not report.ok:
        failed = {
            key: outcome.error or outcome.status.value
            for key, outcome in report.outcomes.items()
            if outcome.status in (Status.FAILED, Status.SKIPPED)
        }
        sys.exit(f"{'destroy' if destroy else 'apply'} failed: {failed}")
    changed = sum(1 for o in report.outcomes.values() if o.status is Status.DONE)
    return Run(planned - started, finished - planned, len(log.calls), len(log.writes()), changed)


def median(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per key, the median of the samples (the lower median for counts, so they stay whole)."""
    result: dict[str, Any] = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        if all(isinstance(v, int) for v in values):
            result[key] = statistics.median_low(values)
        else:
            result[key] = statistics.median(values)
    return result


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""

    def cell(value: Any) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    cells = [list(header), *[[cell(v) for v in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for r in cells:
        first = r[0].ljust(widths[0])
        rest = [v.rjust(w) for v, w in zip(r[1:], widths[1:], strict=True)]
        lines.append("  ".join([first, *rest]).rstrip())
    return "\n".join(lines)


def emit_json(data: dict[str, Any]) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))
