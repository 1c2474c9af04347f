"""The planner: read-only, and the only place that decides what happens to a resource."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from graphlib import TopologicalSorter
from typing import Any

from mlpipe.core.diff import Diff, show
from mlpipe.core.resource import Extra, Observed, Refs, Resource


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    REPLACE = "replace"
    DELETE = "delete"
    NOOP = "no-op"


CHANGING = frozenset({Action.CREATE, Action.UPDATE, Action.REPLACE, Action.DELETE})


@dataclass
class Step:
    resource: Resource
    action: Action
    observed: Observed | None = None
    desired: dict[str, Any] | None = None
    diff: Diff = field(default_factory=Diff)
    notes: list[str] = field(default_factory=list)
    # Why the step cannot run (its resource's, or a dependency's reason); it is skipped.
    blocked: str | None = None

    @property
    def key(self) -> str:
        return self.resource.key

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "name": self.resource.physical,
            "action": str(self.action),
            "changes": [
                {
                    "path": c.path,
                    "before": show(c.before, 10_000),
                    "after": show(c.after, 10_000),
                    "forces_replacement": c.replace,
                }
                for c in self.diff.changes
            ],
            "notes": self.notes,
            "blocked": self.blocked,
        }


@dataclass
class Plan:
    steps: list[Step]
    destroy: bool = False

    @property
    def changes(self) -> list[Step]:
        return [s for s in self.steps if s.action in CHANGING]

    def counts(self) -> dict[str, int]:
        counts = {str(a): 0 for a in Action}
        for step in self.steps:
            counts[str(step.action)] += 1
        return counts

    def as_json(self) -> dict[str, Any]:
        return {
            "mode": "destroy" if self.destroy else "apply",
            "counts": self.counts(),
            "steps": [s.as_json() for s in self.steps],
        }


def ordered(resources: Sequence[Resource]) -> list[Resource]:
    """Resources in dependency order; dependencies outside the set are ignored."""
    by_key = {r.key: r for r in resources}
    if len(by_key) != len(resources):
        raise ValueError("duplicate resource keys")
    graph = {r.key: [d for d in r.depends_on if d in by_key] for r in resources}
    return [by_key[k] for k in TopologicalSorter(graph).static_order()]


def _read_all(
    resources: Iterable[Resource], parallelism: int, remnants: bool = False
) -> dict[str, Observed | None]:
    resources = list(resources)

    def read(resource: Resource) -> Observed | None:
        found = resource.read()
        return found if found is not None or not remnants else resource.remnants()

    with ThreadPoolExecutor(max_workers=max(1, parallelism)) as pool:
        observed = pool.map(read, resources)
        return {r.key: o for r, o in zip(resources, observed, strict=True)}


def decide(resource: Resource, observed: Observed | None, desired: dict[str, Any]) -> Step:
    """What happens to `resource`, given what is live and what is wanted: the one decision,
    made by the planner (and for what a failed create left, by the executor through here)."""
    notes = resource.warnings()
    if observed is None:
        return Step(resource, Action.CREATE, None, desired, notes=notes)
    changes = resource.diff(observed.state, desired)
    action = Action.NOOP
    if changes:
        action = Action.REPLACE if changes.replace else Action.UPDATE
    if not observed.owned:
        notes = [*notes, "exists without mlpipe's ownership tags: apply adopts it"]
    return Step(resource, action, observed, desired, changes, notes)


def plan_apply(
    resources: Sequence[Resource], parallelism: int = 8, only: Collection[str] | None = None
) -> Plan:
    """The apply plan. With `only`, a partial plan: the other resources are read for their
    outputs and left as they are (one that does not exist blocks what depends on it)."""
    order = ordered(resources)
    live = _read_all(order, parallelism)
    outputs: dict[str, dict[str, Any] | None] = {}
    blocked: dict[str, str] = {}
    steps: list[Step] = []
    for resource in order:
        observed = live[resource.key]
        desired = resource.desired(Refs(outputs))
        if only is None or resource.key in only:
            step = decide(resource, observed, desired)
        else:
            step = Step(resource, Action.NOOP, observed, desired, notes=["outside this plan"])
            if observed is None:
                step.blocked = f"{resource.key} does not exist: run `mlpipe apply` first"
        inherited = next((blocked[d] for d in resource.depends_on if d in blocked), None)
        step.blocked = (
            step.blocked
            or resource.blocked(observed)
            or (inherited if step.action in CHANGING else None)
        )
        if step.blocked:
            blocked[resource.key] = step.blocked
        outputs[resource.key] = (
            observed.outputs if observed and step.action is not Action.REPLACE else None
        )
        steps.append(step)
    return Plan(steps + _extras(order, live))


def _extras(order: Sequence[Resource], live: dict[str, Observed | None]) -> list[Step]:
    """Deletes of the extra instances a crash or race left, each after the resources that
    depend on what it duplicates (they move to the kept instance first) and their extras."""
    dependents: dict[str, list[str]] = {r.key: [] for r in order}
    for resource in order:
        for dep in resource.depends_on:
            dependents.setdefault(dep, []).append(resource.key)
    found: dict[str, list[Step]] = {}
    for resource in reversed(order):  # dependents first: their extras are known
        observed = live[resource.key]
        if observed is None or not observed.extras:
            continue
        after = tuple(
            key
            for dependent in dependents[resource.key]
            for key in (dependent, *(s.key for s in found.get(dependent, [])))
        )
        found[resource.key] = [
            Step(
                Extra(resource, index, after),
                Action.DELETE,
                extra,
                notes=[f"another {resource.key} of this pipeline, left by a crash or a race"],
            )
            for index, extra in enumerate(observed.extras, start=1)
        ]
    return [step for resource in order for step in found.get(resource.key, [])]


def plan_destroy(resources: Sequence[Resource], force: bool = False, parallelism: int = 8) -> Plan:
    order = list(reversed(ordered(resources)))
    live = _read_all(order, parallelism, remnants=True)
    steps: list[Step] = []
    for resource in order:
        observed = live[resource.key]
        if observed is None:
            continue
        if not observed.owned:
            steps.append(
                Step(resource, Action.NOOP, observed, notes=["not tagged by mlpipe: left alone"])
            )
        elif resource.retain and not force:
            steps.append(
                Step(resource, Action.NOOP, observed, notes=["retained (use --force to delete)"])
            )
        else:
            steps.append(Step(resource, Action.DELETE, observed))
    return Plan(steps, destroy=True)
