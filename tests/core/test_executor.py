"""The planner and executor with fake resources: ordering, outputs, failure isolation."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from mlpipe.core.diff import Diff
from mlpipe.core.executor import Status, execute
from mlpipe.core.plan import Action, plan_apply, plan_destroy
from mlpipe.core.resource import Observed, Outputs, Refs, Resource


class World:
    """A fake cloud: a dict of resources and a log of calls, safe across threads."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.log: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.gate: threading.Barrier | None = None


class Fake(Resource):
    kind = "fake"
    replace_on = ("Immutable",)

    def __init__(
        self, world: World, name: str, deps: tuple[str, ...] = (), fail: bool = False, **props: Any
    ) -> None:
        super().__init__(None, name, name, depends_on=tuple(f"fake:{d}" for d in deps))  # type: ignore[arg-type]
        self.world, self.fail, self.props = world, fail, props

    @property
    def tags(self) -> dict[str, str]:
        return {"mlpipe:pipeline": "p"}

    def read(self) -> Observed | None:
        item = self.world.items.get(self.name)
        if item is None:
            return None
        return Observed(dict(item), {"id": f"id-{self.name}"}, item.get("owned", True))

    def desired(self, refs: Refs) -> dict[str, Any]:
        return {**self.props, "Deps": [refs(d, "id") for d in self.depends_on]}

    def _act(self, verb: str, state: dict[str, Any] | None) -> None:
        with self.world.lock:
            self.world.running += 1
            self.world.peak = max(self.world.peak, self.world.running)
        try:
            if self.world.gate is not None:
                self.world.gate.wait(timeout=5)
            if self.fail:
                raise RuntimeError(f"{self.name} broke")
            with self.world.lock:
                self.world.log.append((verb, self.name))
                if state is None:
                    self.world.items.pop(self.name, None)
                else:
                    self.world.items[self.name] = state
        finally:
            with self.world.lock:
                self.world.running -= 1

    def create(self, desired: dict[str, Any]) -> Outputs:
        assert all(isinstance(d, str) for d in desired["Deps"]), "unresolved reference"
        self._act("create", dict(desired))
        return {"id": f"id-{self.name}"}

    def update(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> Outputs:
        self._act("update", dict(desired))
        return {}

    def delete(self, observed: Observed) -> None:
        self._act("delete", None)


def test_outputs_flow_to_dependents_in_order() -> None:
    world = World()
    resources = [
        Fake(world, "app", ("net", "key")),
        Fake(world, "net", ("key",)),
        Fake(world, "key"),
    ]
    plan = plan_apply(resources)
    assert [s.key for s in plan.steps] == ["fake:key", "fake:net", "fake:app"]
    assert {s.action for s in plan.steps} == {Action.CREATE}
    report = execute(plan)
    assert report.ok
    assert [name for _, name in world.log] == ["key", "net", "app"]
    assert world.items["app"]["Deps"] == ["id-net", "id-key"]
    # Converged: the same resources plan to nothing.
    assert not plan_apply(resources).changes


def test_failure_skips_only_dependents() -> None:
    world = World()
    resources = [
        Fake(world, "base", fail=True),
        Fake(world, "child", ("base",)),
        Fake(world, "grandchild", ("child",)),
        Fake(world, "independent"),
        Fake(world, "after-independent", ("independent",)),
    ]
    report = execute(plan_apply(resources))
    status = {k: o.status for k, o in report.outcomes.items()}
    assert status == {
        "fake:base": Status.FAILED,
        "fake:child": Status.SKIPPED,
        "fake:grandchild": Status.SKIPPED,
        "fake:independent": Status.DONE,
        "fake:after-independent": Status.DONE,
    }
    assert report.outcomes["fake:base"].error == "RuntimeError: base broke"
    assert not report.ok


def test_independent_resources_run_in_parallel() -> None:
    world = World()
    world.gate = threading.Barrier(3)
    resources = [Fake(world, n) for n in ("a", "b", "c")]
    report = execute(plan_apply(resources), parallelism=3)
    assert report.ok and world.peak == 3
    world2 = World()
    execute(plan_apply([Fake(world2, n) for n in ("a", "b", "c")]), parallelism=1)
    assert world2.peak == 1


def test_update_replace_and_noop_decisions() -> None:
    world = World()
    world.items = {
        "same": {"Size": 1, "Deps": []},
        "grown": {"Size": 1, "Deps": []},
        "moved": {"Immutable": "a", "Deps": []},
    }
    plan = plan_apply(
        [
            Fake(world, "same", Size=1),
            Fake(world, "grown", Size=2),
            Fake(world, "moved", Immutable="b"),
        ]
    )
    actions = {s.key: s.action for s in plan.steps}
    assert actions == {
        "fake:same": Action.NOOP,
        "fake:grown": Action.UPDATE,
        "fake:moved": Action.REPLACE,
    }
    execute(plan)
    assert sorted(world.log) == [("create", "moved"), ("delete", "moved"), ("update", "grown")]


def test_destroy_runs_in_reverse_and_leaves_unowned_and_retained() -> None:
    world = World()
    world.items = {
        "key": {"Deps": []},
        "app": {"Deps": ["id-key"]},
        "foreign": {"Deps": [], "owned": False},
        "kept": {"Deps": []},
    }
    kept = Fake(world, "kept")
    kept.retain = True
    resources = [Fake(world, "key"), Fake(world, "app", ("key",)), Fake(world, "foreign"), kept]
    plan = plan_destroy(resources)
    notes = {s.key: (s.action, s.notes) for s in plan.steps}
    assert notes["fake:foreign"] == (Action.NOOP, ["not tagged by mlpipe: left alone"])
    assert notes["fake:kept"][0] is Action.NOOP
    execute(plan)
    assert world.log == [("delete", "app"), ("delete", "key")]
    assert set(world.items) == {"foreign", "kept"}
    execute(plan_destroy(resources, force=True))
    assert set(world.items) == {"foreign"}


def test_duplicate_keys_are_a_programming_error() -> None:
    world = World()
    with pytest.raises(ValueError, match="duplicate"):
        plan_apply([Fake(world, "a"), Fake(world, "a")])
