"""Traffic shifts, promotions and rollbacks, each all-or-nothing.

An operation validates its input, then takes the pipeline's lock and, under it, reads the
deployment state, decides the new one and makes the endpoint serve it with the reconciler apply
uses (`mlpipe.ops.deploy`). The state in Parameter Store moves to the new value
only once the endpoint has reached it, and the active version last. A change the endpoint does
not reach is undone: the endpoint is put back and the state stays what is served, with the
failure recorded in its history. An operation killed half-way is recovered by the next one,
which reconciles the state to what the endpoint serves and says so.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from mlpipe.context import PipelineContext
from mlpipe.core.errors import MlpipeError, UsageError
from mlpipe.core.wait import Backoff, Pending, TimedOut, poll
from mlpipe.ops.deploy import deploy
from mlpipe.ops.history import parameter_history
from mlpipe.ops.lock import Lease, Now, operation_lock
from mlpipe.ops.registry import active_version, known_versions, require_deployable
from mlpipe.ops.state import DeploymentState, Variant, load_state, save_state
from mlpipe.resources.sagemaker.endpoint import relative_weights, settled_endpoint


@dataclass
class Transition:
    """What an operation did: the deployment states before and after, and the steps it took."""

    kind: str
    before: DeploymentState
    after: DeploymentState
    active_before: str | None
    active_after: str | None
    steps: list[str] = field(default_factory=list)
    seconds: float = 0.0
    calls: list[str] = field(default_factory=list)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runner:
    """The shared mechanism of every operation: lock, recover, reconcile, verify, save."""

    ctx: PipelineContext
    timeout: float | None = None
    force_unlock: bool = False
    now: Now = _utcnow
    lease: Lease | None = None

    def clock(self) -> float:
        """Seconds on the run's clock (`Context.clock`), for durations and canary intervals."""
        return self.ctx.clock.now()

    def current(self) -> DeploymentState:
        state = load_state(self.ctx)
        if state is None:
            raise MlpipeError(
                f"no deployment state at {self.ctx.names.deployment_param}: run `mlpipe apply` "
                "first"
            )
        return state

    @contextmanager
    def locked(self, operation: str) -> Iterator[DeploymentState]:
        """Hold the lock; the state, read under it and recovered if an interrupted operation
        left it apart from the endpoint."""
        with operation_lock(
            self.ctx, operation, force_unlock=self.force_unlock, now=self.now
        ) as lease:
            self.lease = lease
            try:
                yield self.recover()
            finally:
                self.lease = None

    def recover(self) -> DeploymentState:
        """The state, reconciled to what the endpoint serves (saying so) when they differ."""
        state = self.current()
        served = served_state(self.ctx, state, self.timeout)
        if served is not None and _served(served) != _served(state):
            summary = (
                f"an interrupted operation left the state at {_describe(state)} while the "
                f"endpoint serves {_describe(served)}: the state follows the endpoint"
            )
            self.ctx.progress("recover", summary)
            state = changed(served, self.record("recover", summary))
            save_state(self.ctx, state)
        # A promote or rollback whose last step was saved, killed before the active version.
        operation, active = state.operation or {}, active_version(self.ctx)
        version = operation.get("to")
        finished = any(
            v.name == state.champion and v.version == version and v.weight == 100
            for v in state.variants
        )
        if operation.get("kind") in ("promote", "rollback") and version != active and finished:
            self.ctx.progress(
                "recover",
                f"an interrupted {operation['kind']} left all the traffic on {version} with "
                f"{active} still the active version: {version} is active",
            )
            self.set_active(str(version))
        return state

    def record(self, kind: str, summary: str, **extra: Any) -> dict[str, Any]:
        return {
            "kind": kind,
            "summary": summary,
            "by": self.ctx.aws.caller_arn,
            "at": datetime.now(UTC).isoformat(),
            **extra,
        }

    def apply(self, state: DeploymentState, served: DeploymentState) -> None:
        """Make the endpoint serve `state`, then save it. If it cannot, the endpoint is put
        back to `served` and the state saved as `served` with the failure recorded; raises."""
        if self.lease is not None:
            self.lease.check()
        problem = self._reach(state)
        if problem is None:
            save_state(self.ctx, state)
            return
        summary = (state.operation or {}).get("summary", "the change")
        back = self._reach(served)
        failed = self.record("failed", f"{summary}: {problem}")
        if back is None:
            save_state(self.ctx, changed(served, failed))
            raise MlpipeError(
                f"the endpoint did not reach the new state: {problem}; it serves "
                f"{_describe(served)} as before, and the state says so"
            )
        raise MlpipeError(
            f"the endpoint did not reach the new state: {problem}; putting it back failed "
            f"too: {back}. The next operation or `mlpipe apply` reconciles it"
        )

    def _reach(self, state: DeploymentState) -> str | None:
        """Deploy `state`; None once the endpoint serves it, else why not."""
        try:
            result = deploy(self.ctx, state, timeout=self.timeout)
        except (ClientError, MlpipeError) as exc:
            return str(exc)
        if not result.ok:
            return "; ".join(f"{k}: {v}" for k, v in result.errors.items())
        live = live_weights(self.ctx)
        if live != state.weights:
            return f"endpoint weights are {live}, expected {state.weights}"
        return None

    def set_active(self, version: str) -> None:
        self.ctx.aws.client("ssm").put_parameter(
            Name=self.ctx.names.active_version_param,
            Value=version,
            Type="String",
            Overwrite=True,
        )


def _served(state: DeploymentState) -> list[tuple[str, str, int]]:
    return sorted((v.name, v.version, v.weight) for v in state.variants)


def _describe(state: DeploymentState) -> str:
    return ", ".join(f"{v.name} {v.version}@{v.weight}%" for v in state.variants)


def served_state(
    ctx: PipelineContext, state: DeploymentState, timeout: float | None = None
) -> DeploymentState | None:
    """What the endpoint serves once settled, as a deployment state (roles from `state`); None
    when there is no endpoint in service or a model is not one of the registry's."""
    sm = ctx.aws.client("sagemaker")
    endpoint = settled_endpoint(ctx, timeout)
    if endpoint is None or endpoint["EndpointStatus"] != "InService":
        return None
    config = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    versions = {ctx.names.model(v): v for v in {*state.versions, *known_versions(ctx)}}
    weights = relative_weights(endpoint)
    variants = []
    for variant in config["ProductionVariants"]:
        version = versions.get(variant["ModelName"])
        if version is None or variant["VariantName"] not in weights:
            return None
        weight = round(weights[variant["VariantName"]] * 100)
        variants.append(Variant(name=variant["VariantName"], version=version, weight=weight))
    names = {v.name for v in variants}
    if sum(v.weight for v in variants) != 100 or state.champion not in names:
        return None
    challenger = state.challenger if state.challenger in names else None
    return DeploymentState(variants=tuple(variants), champion=state.champion, challenger=challenger)


def live_weights(ctx: PipelineContext) -> dict[str, float]:
    endpoint = ctx.aws.client("sagemaker").describe_endpoint(EndpointName=ctx.names.endpoint)
    return relative_weights(endpoint)


def changed(
    state: DeploymentState,
    operation: dict[str, Any] | None,
    *,
    weights: dict[str, int] | None = None,
    serve: tuple[str, str] | None = None,
    champion: str | None = None,
) -> DeploymentState:
    """A copy of the state with new weights, one variant serving another version, or a new
    champion (the old champion becomes the challenger); validated like the spec."""
    variants = []
    for variant in state.model_dump()["variants"]:
        if weights is not None:
            variant["weight"] = weights[variant["name"]]
        if serve is not None and variant["name"] == serve[0]:
            variant["version"] = serve[1]
        variants.append(variant)
    roles = {}
    if champion is not None and champion != state.champion:
        roles = {"champion": champion, "challenger": state.champion}
    return DeploymentState.model_validate(
        {**state.model_dump(), "variants": variants, "operation": operation, **roles}
    )


def parse_weights(state: DeploymentState, requested: dict[str, int]) -> dict[str, int]:
    """Validate requested weights (unnamed variants get 0) against the live variants."""
    names = [v.name for v in state.variants]
    unknown = sorted(set(requested) - set(names))
    if unknown:
        raise UsageError(
            f"unknown variant(s) {', '.join(unknown)}; the endpoint has {', '.join(names)}"
        )
    for name, weight in requested.items():
        if not 0 <= weight <= 100:
            raise UsageError(f"weight of {name} must be 0 to 100, got {weight}")
    weights = {name: requested.get(name, 0) for name in names}
    total = sum(weights.values())
    if total != 100:
        raise UsageError(f"weights must add up to 100, got {total}")
    return weights


def traffic(runner: Runner, requested: dict[str, int]) -> Transition:
    ctx = runner.ctx
    parse_weights(runner.current(), requested)  # bad input: refused before the lock
    started = runner.clock()
    with runner.locked("traffic") as before:
        weights = parse_weights(before, requested)
        old = {v.name: v.weight for v in before.variants}
        summary = ", ".join(f"{n} {old[n]}→{w}" for n, w in weights.items())
        after = changed(before, runner.record("traffic", summary), weights=weights)
        runner.apply(after, before)
        active = active_version(ctx)
    return Transition("traffic", before, after, active, active, [summary], runner.clock() - started)


def _serving(state: DeploymentState, version: str) -> str | None:
    """The variant serving `version`, preferring the champion."""
    names = [v.name for v in state.variants if v.version == version]
    return state.champion if state.champion in names else (names[0] if names else None)


def _split(state: DeploymentState, target: str, percent: int) -> dict[str, int]:
    """`percent` to the target, the rest to the current champion (or the first other)."""
    others = [v.name for v in state.variants if v.name != target]
    rest = state.champion if state.champion in others else others[0]
    weights = {v.name: 0 for v in state.variants}
    weights[target] = percent
    if percent < 100:
        weights[rest] = 100 - percent
    return weights


@dataclass(frozen=True)
class Canary:
    steps: tuple[int, ...] = (100,)
    interval: float = 0.0
    poll: float = 10.0


def parse_canary(text: str | None, interval: str | None) -> Canary:
    if not text:
        return Canary()
    try:
        steps = tuple(int(part) for part in text.split(","))
    except ValueError as exc:
        raise UsageError(f"--canary: {text!r} is not a list of percentages like 10,50,100") from exc
    if not steps or steps[-1] != 100 or list(steps) != sorted(set(steps)) or steps[0] <= 0:
        raise UsageError("--canary: increasing percentages from above 0, ending at 100")
    return Canary(steps, parse_duration(interval or "5m"))


def parse_duration(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smh]?)", text)
    if match is None or float(match[1]) <= 0:
        raise UsageError(f"{text!r} is not a duration above zero like 30s, 5m or 1h")
    return float(match[1]) * units.get(match[2], 1)


def alarms_firing(ctx: PipelineContext, variant: str) -> list[str]:
    names = [ctx.names.alarm(f"{purpose}-{variant}") for purpose in ctx.spec.models.canary_alarms]
    alarms = ctx.aws.client("cloudwatch").describe_alarms(AlarmNames=names)["MetricAlarms"]
    return sorted(a["AlarmName"] for a in alarms if a["StateValue"] == "ALARM")


class PromotionAborted(MlpipeError):
    """A canary step saw an alarm; the previous state was restored."""


def _promotion(
    runner: Runner, before: DeploymentState, version: str, canary: Canary
) -> tuple[Transition, str]:
    """What promoting `version` from `before` does: the outcome (steps, staged state) and the
    variant that will serve it."""
    active = active_version(runner.ctx)
    target = _serving(before, version)
    steps: list[str] = []
    staged = before
    if target is None:
        others = [v.name for v in before.variants if v.name != before.champion]
        target = before.challenger or others[0]
        record = runner.record("promote", f"deploy {version} on {target}", to=version)
        # The new version starts with no traffic: the canary's steps give it its share.
        staged = changed(before, record, serve=(target, version), weights=_split(before, target, 0))
        steps.append(
            f"deploy {version} on {target} with no traffic: new model and endpoint config, "
            "UpdateEndpoint"
        )
    steps += [f"shift {p}% of the traffic to {target} ({version})" for p in canary.steps]
    if len(canary.steps) > 1:
        wait = f"between steps: wait {canary.interval:g}s watching the alarms of {target}"
        steps.insert(-1, wait)
    steps.append(f"active version {active} → {version}; champion {target}")
    return Transition("promote", before, staged, active, version, steps), target


def promote(
    runner: Runner, version: str, canary: Canary = Canary(), dry_run: bool = False
) -> Transition:
    require_deployable(runner.ctx, version)  # bad input: refused before the lock
    if dry_run:
        return _promotion(runner, runner.current(), version, canary)[0]
    started = runner.clock()
    with runner.locked(f"promote {version}") as before:
        outcome, target = _promotion(runner, before, version, canary)
        staged, active = outcome.after, outcome.active_before
        if staged is not before:
            runner.apply(staged, before)
        state = staged
        for index, percent in enumerate(canary.steps):
            record = runner.record("promote", f"{percent}% to {target} ({version})", to=version)
            weights = _split(state, target, percent)
            champion = target if percent == 100 else None
            previous, state = state, changed(state, record, weights=weights, champion=champion)
            runner.apply(state, previous)
            firing = _watch(runner, target, canary) if index < len(canary.steps) - 1 else []
            if firing:
                reason = f"canary aborted: {', '.join(firing)} in ALARM"
                # Back to the state before: the versions too, or the target would keep
                # serving the version that fired the alarm.
                restore = changed(before, runner.record("rollback", reason, to=active))
                runner.apply(restore, state)
                raise PromotionAborted(
                    f"promotion of {version} {reason} at {percent}%; traffic restored to "
                    f"{restore.weights}, active version stays {active}"
                )
        runner.set_active(version)
    outcome.after, outcome.seconds = state, runner.clock() - started
    return outcome


def _watch(runner: Runner, variant: str, canary: Canary) -> list[str]:
    """Wait out a canary interval, checking the alarms; the alarms firing, if any."""

    def attempt() -> list[str] | Pending:
        firing = alarms_firing(runner.ctx, variant)
        return firing or Pending(firing, "no alarm")

    def report(_last: Pending, elapsed: float) -> None:
        left = canary.interval - elapsed
        runner.ctx.progress("promote", f"watching {variant}: {left:.0f}s left")

    every = Backoff(first=canary.poll, cap=canary.poll)
    try:
        return poll(
            attempt, timeout=canary.interval, clock=runner.ctx.clock, backoff=every, progress=report
        )
    except TimedOut:
        return []


def previous_active(ctx: PipelineContext) -> str | None:
    """The active version before the current one, from Parameter Store's history."""
    history = parameter_history(ctx, ctx.names.active_version_param)
    values = [entry["Value"] for entry in history]
    current = values[-1] if values else None
    return next((v for v in reversed(values) if v != current), None)


def rollback(runner: Runner, to: str | None = None) -> Transition:
    ctx = runner.ctx
    active = active_version(ctx)
    version = to or previous_active(ctx)
    if version is None:
        raise UsageError(
            f"nothing to roll back to: {ctx.names.active_version_param} has no earlier version; "
            "name one with --to VERSION"
        )
    if version == active:
        raise UsageError(f"{version} is already the active version")
    require_deployable(ctx, version)
    started = runner.clock()
    with runner.locked(f"rollback to {version}") as before:
        active = active_version(ctx)
        target = _serving(before, version)
        record = runner.record("rollback", f"{active} → {version}", to=version, **{"from": active})
        serve = None
        if target is not None:
            step = f"shift all traffic to {target}, which still serves {version}"
        else:
            target = before.champion
            serve = (target, version)
            step = f"UpdateEndpoint: {target} serves {version} again (its retained endpoint config)"
        after = changed(
            before, record, weights=_split(before, target, 100), serve=serve, champion=target
        )
        runner.apply(after, before)
        runner.set_active(version)
    steps = [step, f"active version {active} → {version}"]
    return Transition("rollback", before, after, active, version, steps, runner.clock() - started)
