"""The application object: one spec, one AWS target, the resources, and what to do with them.

The CLI parses arguments, calls this, and renders what it returns; nothing here prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlpipe import resources
from mlpipe.core.clients import Aws, AwsTarget
from mlpipe.core.context import Context, Progress
from mlpipe.core.executor import Event, Report, execute
from mlpipe.core.plan import Action, Plan, plan_apply, plan_destroy
from mlpipe.core.resource import Resource
from mlpipe.naming import Names
from mlpipe.resources import monitoring
from mlpipe.spec import Spec


@dataclass
class Pipeline:
    spec: Spec
    aws: Aws
    ctx: Context

    @classmethod
    def connect(cls, spec: Spec, target: AwsTarget, progress: Progress | None = None) -> Pipeline:
        aws = Aws(target)
        names = Names(spec.pipeline, spec.environment, aws.account, aws.region)
        ctx = Context(aws, spec, names)
        if progress:
            ctx.progress = progress
        return cls(spec, aws, ctx)

    def resources(self) -> list[Resource]:
        return resources.build(self.ctx)

    def plan(self, parallelism: int = 8) -> Plan:
        return plan_apply(self.resources(), parallelism)

    def destroy_plan(self, force: bool = False, parallelism: int = 8) -> Plan:
        return plan_destroy(self.resources(), force, parallelism)

    def execute(self, plan: Plan, parallelism: int = 8, on_event: Event | None = None) -> Report:
        return execute(plan, parallelism, on_event)

    def alarms(self) -> list[dict[str, Any]]:
        """Each pipeline alarm's state: OK, ALARM, INSUFFICIENT_DATA or MISSING."""
        return monitoring.alarm_states(self.ctx)

    def status(self, parallelism: int = 8) -> list[dict[str, Any]]:
        """Every resource: missing, in sync or drifted (with the drifted properties)."""
        rows = []
        for step in self.plan(parallelism).steps:
            state = {
                Action.CREATE: "missing",
                Action.NOOP: "in sync",
            }.get(step.action, "drifted")
            rows.append(
                {
                    "key": step.key,
                    "name": step.resource.physical,
                    "status": state,
                    "drifted": step.diff.paths(),
                    "notes": step.notes,
                }
            )
        return rows
