"""Runs the batch workflow's shard jobs locally, as its Parallel state would on AWS.

moto keeps Step Functions executions RUNNING and cannot run Batch jobs. This runner reads the
deployed state machine's definition, and for each branch of its Parallel state submits the Batch
job (so the embedded AWS records it; the state machine's role must allow it, as IAM evaluates
the submission: see `batch_auth`) and runs the job's container command, `python -m
batch_job`, in a process of its own with the job definition's environment, the branch's
container overrides and the embedded AWS's endpoints. Branches run in parallel; a failed branch
fails the run, and the Catch path's alert is published to the SNS topic as the state machine
would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlpipe.core.clients import Aws
from mlpipe.local.batch_auth import SubmitDenied, authorize_submit_job
from mlpipe.local.functions import runtime_environment
from mlpipe.local.logship import LogShipper
from mlpipe.local.metrics import MetricSink

SUBMIT_JOB = "batch:submitJob"
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ShardRun:
    branch: str
    job_id: str
    exit_code: int
    summary: dict[str, Any]
    log_tail: str


@dataclass
class WorkflowRun:
    execution: str
    shards: list[ShardRun] = field(default_factory=list)
    alert: str | None = None

    @property
    def ok(self) -> bool:
        return all(s.exit_code == 0 for s in self.shards)


def _tasks(definition: dict[str, Any]) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, Any]]:
    """The Batch submit tasks of the Parallel state's branches, and the Parallel state."""
    parallel = next(s for s in definition["States"].values() if s["Type"] == "Parallel")
    tasks = []
    for branch in parallel["Branches"]:
        for name, state in branch["States"].items():
            if state.get("Type") == "Task" and SUBMIT_JOB in state.get("Resource", ""):
                tasks.append((name, state["Parameters"]))
    return tasks, parallel


def _job_definition(batch: Any, reference: str) -> dict[str, Any]:
    """The job definition a submit would run: a reference without a revision is the latest
    ACTIVE revision, as Batch resolves it."""
    name = reference.rsplit("/", 1)[-1]
    if ":" in name:
        found = batch.describe_job_definitions(jobDefinitions=[reference])["jobDefinitions"]
    else:
        found = batch.describe_job_definitions(jobDefinitionName=name, status="ACTIVE")[
            "jobDefinitions"
        ]
    if not found:
        raise LookupError(f"no ACTIVE job definition {reference}")
    return dict(max(found, key=lambda d: d["revision"]))


def _resolve(entries: list[dict[str, str]], execution: str) -> dict[str, str]:
    """Container override entries; `Value.$` paths resolve against the execution context."""
    context = {"$$.Execution.Name": execution}
    resolved = {}
    for entry in entries:
        if "Value.$" in entry:
            resolved[entry["Name"]] = context[entry["Value.$"]]
        else:
            resolved[entry["Name"]] = entry["Value"]
    return resolved


@dataclass
class LocalWorkflow:
    aws: Aws
    state_machine_arn: str
    sagemaker_runtime_url: str
    metrics: MetricSink | None = None
    logs: LogShipper | None = None

    def _count(self, name: str) -> None:
        """Step Functions' execution metrics, per StateMachineArn."""
        if self.metrics is not None:
            dims = {"StateMachineArn": self.state_machine_arn}
            self.metrics.put("AWS/States", name, 1, "Count", dims)

    def run(self, execution: str, timeout: float = 600.0) -> WorkflowRun:
        machine = self.aws.client("stepfunctions").describe_state_machine(
            stateMachineArn=self.state_machine_arn
        )
        definition = json.loads(machine["definition"])
        tasks, parallel = _tasks(definition)
        self._count("ExecutionsStarted")
        self._history(machine, execution, "ExecutionStarted", {})
        with ThreadPoolExecutor(max_workers=max(1, len(tasks))) as pool:
            shards = list(
                pool.map(
                    lambda task: self._shard(
                        execution, *task, role_arn=machine["roleArn"], timeout=timeout
                    ),
                    tasks,
                )
            )
        run = WorkflowRun(execution, shards)
        self._count("ExecutionsSucceeded" if run.ok else "ExecutionsFailed")
        outcome = {s.branch: {"jobId": s.job_id, "exitCode": s.exit_code} for s in shards}
        kind = "ExecutionSucceeded" if run.ok else "ExecutionFailed"
        self._history(machine, execution, kind, {"output": json.dumps(outcome)})
        if not run.ok:
            run.alert = self._alert(alert_topic(definition, parallel), machine, run)
        return run

    def _shard(
        self, execution: str, branch: str, params: dict[str, Any], *, role_arn: str, timeout: float
    ) -> ShardRun:
        batch = self.aws.client("batch")
        try:  # Step Functions submits with the state machine's role
            authorize_submit_job(
                self.aws.client("iam"),
                role_arn,
                params["JobQueue"],
                params["JobDefinition"],
                self.aws.region,
                self.aws.account,
            )
        except SubmitDenied as exc:
            return ShardRun(branch, "", 1, {}, str(exc))
        container = _job_definition(batch, params["JobDefinition"])["containerProperties"]
        overrides = _resolve(params["ContainerOverrides"]["Environment"], execution)
        job_id = batch.submit_job(
            jobName=params["JobName"],
            jobQueue=params["JobQueue"],
            jobDefinition=params["JobDefinition"],
            containerOverrides={
                "environment": [{"name": k, "value": v} for k, v in overrides.items()]
            },
        )["jobId"]
        env = {
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": os.pathsep.join((str(ROOT), str(ROOT / "lambdas" / "common"))),
            **{e["name"]: e["value"] for e in container.get("environment", [])},
            **overrides,
            **runtime_environment(
                str(self.aws.endpoint_url), self.aws.region, self.sagemaker_runtime_url
            ),
        }
        proc = subprocess.run(
            [sys.executable, "-m", "batch_job"],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        self._job_log(container, params["JobDefinition"], job_id, proc.stdout + proc.stderr)
        tail = "\n".join(proc.stderr.splitlines()[-5:])
        return ShardRun(branch, job_id, proc.returncode, _summary(proc.stderr + proc.stdout), tail)

    def _job_log(
        self, container: dict[str, Any], definition: str, job_id: str, output: str
    ) -> None:
        """The job's output to its awslogs group and stream, as Batch sends it."""
        if self.logs is None:
            return
        options = (container.get("logConfiguration") or {}).get("options") or {}
        group = options.get("awslogs-group", "/aws/batch/job")
        name = definition.rsplit("/", 1)[-1].split(":")[0]
        stream = f"{options.get('awslogs-stream-prefix', name)}/default/{job_id}"
        for line in output.splitlines():
            self.logs.write(group, stream, line)

    def _history(
        self, machine: dict[str, Any], execution: str, kind: str, details: dict[str, Any]
    ) -> None:
        """An execution history event to the state machine's log group, at its level."""
        logging = machine.get("loggingConfiguration") or {}
        level = logging.get("level", "OFF")
        if self.logs is None or level == "OFF" or (level != "ALL" and "Failed" not in kind):
            return
        for destination in logging.get("destinations") or []:
            arn = (destination.get("cloudWatchLogsLogGroup") or {}).get("logGroupArn", "")
            group = arn.split(":log-group:", 1)[-1].removesuffix(":*")
            execution_arn = self.state_machine_arn.replace(":stateMachine:", ":execution:")
            event = {
                "type": kind,
                "details": details,
                "execution_arn": f"{execution_arn}:{execution}",
                "event_timestamp": str(int(time.time() * 1000)),
            }
            self.logs.write(group, f"states/{machine['name']}/{execution}", json.dumps(event))

    def _alert(
        self, topic_arn: str | None, machine: dict[str, Any], run: WorkflowRun
    ) -> str | None:
        if topic_arn is None:
            return None
        failed = ", ".join(f"{s.branch} exit {s.exit_code}" for s in run.shards if s.exit_code)
        message = f"Batch inference run {run.execution} failed: {failed}"
        subject = f"{machine['name']}: batch inference failed"
        self.aws.client("sns").publish(TopicArn=topic_arn, Subject=subject, Message=message)
        return message


def alert_topic(definition: dict[str, Any], parallel: dict[str, Any]) -> str | None:
    """The SNS topic the Parallel state's Catch path publishes to, if it has one."""
    for catch in parallel.get("Catch", []):
        state = definition["States"].get(catch["Next"], {})
        if state.get("Type") == "Task" and state.get("Resource", "").endswith(":sns:publish"):
            return str(state["Parameters"]["TopicArn"])
    return None


def _summary(output: str) -> dict[str, Any]:
    """The job's summary: its last JSON log line whose message is "summary"."""
    for line in reversed(output.splitlines()):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("message") == "summary":
            return record
    return {}
