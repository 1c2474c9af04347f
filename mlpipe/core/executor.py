"""The executor: walks a plan's dependency graph with a thread pool.

Outputs of finished resources reach their dependents; a failure skips only the resources that
depend on it (transitively) and every independent branch still runs to the end. In a destroy
plan the edges are reversed: a resource is deleted after everything that depends on it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from enum import StrEnum
from graphlib import TopologicalSorter
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from mlpipe.core.context import transient
from mlpipe.core.diff import contains_unknown
from mlpipe.core.errors import describe_error, met_itself
from mlpipe.core.plan import Action, Plan, Step, decide
from mlpipe.core.resource import Outputs, Refs


class Status(StrEnum):
    DONE = "done"
    UNCHANGED = "unchanged"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass
class Outcome:
    key: str
    action: Action
    status: Status
    seconds: float = 0.0
    error: str | None = None


@dataclass
class Report:
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    outputs: dict[str, Outputs] = field(default_factory=dict)

    def by_status(self, status: Status) -> list[Outcome]:
        return [o for o in self.outcomes.values() if o.status is status]

    @property
    def ok(self) -> bool:
        return not self.by_status(Status.FAILED) and not self.by_status(Status.SKIPPED)


Event = Callable[[Step, Outcome | None], None]


def _desired(step: Step, refs: Refs) -> dict[str, Any]:
    """The plan's desired state; computed again, once, only where it held values that were
    not known at plan time (an id of a resource this run creates)."""
    if step.desired is not None and not contains_unknown(step.desired):
        return step.desired
    return step.resource.desired(refs)


def _run(step: Step, refs: Refs) -> Outputs:
    resource, observed = step.resource, step.observed
    if step.action is Action.NOOP:
        return observed.outputs if observed else {}
    if step.action is Action.DELETE:
        assert observed is not None
        for instance in (*observed.extras, observed):  # extras: left by a crash or race
            resource.delete(instance)
        return {}
    desired = _desired(step, refs)
    if step.action is Action.CREATE:
        try:
            return resource.create(desired)
        except (BotoCoreError, ClientError) as exc:
            # A create retried after a lost answer met its own first attempt, or whose last
            # answer was lost (botocore's retries or its retry quota ran out): adopt what it made.
            found = resource.read() if met_itself(exc) or transient(exc) else None
            if found is None or not found.owned:
                raise
            resource.ctx.progress(resource.key, "adopted what a create whose answer was lost made")
            adopted = decide(resource, found, desired)
            updated = resource.apply_changes(found, desired, adopted.diff) if adopted.diff else {}
            return {**found.outputs, **updated}
    assert observed is not None
    if step.action is Action.REPLACE:
        resource.delete(observed)
        return resource.create(desired)
    return {**observed.outputs, **resource.apply_changes(observed, desired, step.diff)}


def execute(plan: Plan, parallelism: int = 8, on_event: Event | None = None) -> Report:
    steps = {s.key: s for s in plan.steps}
    graph: dict[str, set[str]] = {k: set() for k in steps}
    for step in plan.steps:
        for dep in step.resource.depends_on:
            if dep in steps:
                if plan.destroy:
                    graph[dep].add(step.key)
                else:
                    graph[step.key].add(dep)
    sorter = TopologicalSorter(graph)
    sorter.prepare()
    report = Report()
    notify = on_event or (lambda _s, _o: None)
    blocked: set[str] = set()

    def dependents_of(key: str) -> set[str]:
        found, todo = set(), [key]
        while todo:
            current = todo.pop()
            for other, deps in graph.items():
                if current in deps and other not in found:
                    found.add(other)
                    todo.append(other)
        return found

    def work(step: Step) -> tuple[Outputs, float]:
        started = time.monotonic()
        outputs = _run(step, Refs(report.outputs))
        return outputs, time.monotonic() - started

    with ThreadPoolExecutor(max_workers=max(1, parallelism)) as pool:
        running: dict[Future[tuple[Outputs, float]], Step] = {}
        while sorter.is_active():
            for key in sorter.get_ready():
                step = steps[key]
                if step.blocked:
                    blocked |= dependents_of(key)
                    report.outcomes[key] = Outcome(
                        key, step.action, Status.SKIPPED, error=f"blocked: {step.blocked}"
                    )
                    notify(step, report.outcomes[key])
                    sorter.done(key)
                    continue
                if key in blocked:
                    report.outcomes[key] = Outcome(key, step.action, Status.SKIPPED)
                    notify(step, report.outcomes[key])
                    sorter.done(key)
                    continue
                notify(step, None)
                running[pool.submit(work, step)] = step
            if not running:
                continue
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                step = running.pop(future)
                try:
                    outputs, seconds = future.result()
                except Exception as exc:  # every failure is reported, none stops the rest
                    outcome = Outcome(
                        step.key, step.action, Status.FAILED, error=describe_error(exc)
                    )
                    blocked |= dependents_of(step.key)
                else:
                    report.outputs[step.key] = outputs
                    status = Status.UNCHANGED if step.action is Action.NOOP else Status.DONE
                    outcome = Outcome(step.key, step.action, status, seconds)
                report.outcomes[step.key] = outcome
                notify(step, outcome)
                sorter.done(step.key)
    return report
