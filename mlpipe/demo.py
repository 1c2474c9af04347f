"""`mlpipe demo`: the whole pipeline on the embedded AWS, with real models and real handlers.

Starts the embedded AWS and its runtimes in this process, builds two real model versions and
applies the spec with them as its artifacts (the apply uploads and registers them), sends
predictions through the deployed API to the real preprocess handler and the A/B endpoint,
streams records through Kinesis to the stream handler, promotes and rolls back, runs the batch
workflow's shard jobs, destroys, and returns the numbers it measured.
"""

from __future__ import annotations

import json
import re
import statistics
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from mlpipe.core.clients import AwsTarget
from mlpipe.core.context import Context
from mlpipe.core.errors import MlpipeError
from mlpipe.core.executor import Report
from mlpipe.local import alarms, moto_ext
from mlpipe.local.server import LocalAws
from mlpipe.local.services import LocalServices
from mlpipe.local.workflow import LocalWorkflow
from mlpipe.naming import Arns
from mlpipe.ops import deployments
from mlpipe.ops.client import ApiClient, Prediction, api_client
from mlpipe.pipeline import Pipeline
from mlpipe.spec import Spec

# How long the embedded endpoints stay Creating/Updating: long enough to be seen, short
# enough for a demo.
ENDPOINT_TRANSITION_SECONDS = 0.5
BATCH_INPUT_PARTS = 6
# Alarm periods pass this many times faster on the demo's embedded AWS (300 s in 5 s), and
# alarms are evaluated and metrics published every quarter second.
TIME_SCALE = 60.0
ALARM_INTERVAL = 0.25
# The faulty version's canary: its steps, and how long each step is watched at most.
CANARY_STEPS = (10, 50, 100)
CANARY_WATCH_SECONDS = 30.0


Inspect = Callable[[Pipeline, LocalServices], None]


class Reporter(Protocol):
    def step(self, title: str) -> AbstractContextManager[None]: ...

    def note(self, key: str, message: str) -> None: ...


@dataclass
class DemoSettings:
    requests: int = 300
    stream_records: int = 200
    batch_shards_timeout: float = 300.0
    seed: int = 0


@dataclass
class DemoResult:
    rows: list[tuple[str, str]] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)

    def add(self, what: str, result: str, **numbers: Any) -> None:
        self.rows.append((what, result))
        self.numbers.update(numbers)


def _apply_summary(report: Report, seconds: float, calls: int) -> str:
    done = sum(1 for o in report.outcomes.values() if o.status.value == "done")
    return f"{done} resources in {seconds:.1f}s, {calls} API calls"


class Demo:
    def __init__(self, spec: Spec, settings: DemoSettings, reporter: Reporter) -> None:
        self.spec = spec
        self.settings = settings
        self.reporter = reporter
        self.result = DemoResult()

    def run(self, before_destroy: Inspect | None = None) -> DemoResult:
        """Run every step; `before_destroy` sees the live pipeline before it is destroyed."""
        before = moto_ext.ENDPOINT_TRANSITION_SECONDS, alarms.TIME_SCALE
        moto_ext.ENDPOINT_TRANSITION_SECONDS = ENDPOINT_TRANSITION_SECONDS
        alarms.TIME_SCALE = TIME_SCALE
        try:
            with (
                LocalAws(port=0, alarm_interval=ALARM_INTERVAL) as local,
                tempfile.TemporaryDirectory() as work,
            ):
                local.reset()  # an embedded AWS of its own, whatever this process ran before
                target = AwsTarget(endpoint_url=local.endpoint_url, local=True)
                self._run(target, Path(work), before_destroy)
        finally:
            moto_ext.ENDPOINT_TRANSITION_SECONDS, alarms.TIME_SCALE = before
        return self.result

    # --- the steps --------------------------------------------------------------------------
    def _run(self, target: AwsTarget, work: Path, before_destroy: Inspect | None) -> None:
        from mlpipe.examples.models import HELDOUT_FILE, build_examples, read_heldout

        step = self.reporter.step
        with step("build the example models"):
            examples = build_examples(work / "models", seed=self.settings.seed, fault="errors")
        for example in examples:
            self.result.add(
                f"model {example.version}",
                f"held-out accuracy {example.accuracy:.3f}, {example.description}",
                **{f"accuracy_{example.version}": example.accuracy},
            )
        heldout = read_heldout(work / "models" / HELDOUT_FILE)
        # The versions' artifacts are the models just built: the apply uploads and registers them.
        data = self.spec.model_dump()
        for example in examples:
            data["models"]["versions"][example.version] = {
                **data["models"]["versions"].get(example.version, {}),
                "artifact": str(example.path),
                "baseline": example.baseline,
            }
        self.spec = Spec.model_validate(data)
        pipeline = Pipeline.connect(self.spec, target, self.reporter.note)
        ctx = pipeline.ctx
        self._apply(pipeline)
        with LocalServices(
            pipeline.aws, ctx.names, self.spec.api.stage, metrics_interval=ALARM_INTERVAL
        ) as services:
            client = api_client(ctx, services.api_url)
            self._predict(client, heldout)
            self._stream(pipeline, services, heldout)
            runner = deployments.Runner(ctx)
            with step("promote v2.0.0"):
                promoted = deployments.promote(runner, "v2.0.0")
            self.result.add("promote v2.0.0", f"{promoted.seconds:.2f}s; " + promoted.steps[-1])
            self._rollback(runner, client, heldout)
            fired = self._canary(runner, client, heldout)
            self._batch(pipeline, services, heldout)
            self._alarm_history(ctx, *fired)
            published = services.metrics
            self.result.add(
                "metrics",
                f"{published.sent} values published by the runtimes in {published.calls} "
                "PutMetricData calls",
                metric_values=published.sent,
                metric_calls=published.calls,
            )
            if before_destroy is not None:
                before_destroy(pipeline, services)
        with step("destroy"):
            started = time.monotonic()
            report = pipeline.execute(pipeline.destroy_plan(force=True))
        self._require(report, "destroy")
        self.result.add(
            "destroy", f"{len(report.outcomes)} resources in {time.monotonic() - started:.1f}s"
        )

    def _require(self, report: Report, what: str) -> None:
        if not report.ok:
            failed = {k: o.error for k, o in report.outcomes.items() if o.error}
            raise MlpipeError(f"{what} failed: {failed}")

    def _apply(self, pipeline: Pipeline) -> None:
        log = pipeline.aws.log
        with self.reporter.step(f"apply {self.spec.pipeline}-{self.spec.environment}"):
            started, calls = time.monotonic(), len(log.calls)
            report = pipeline.execute(pipeline.plan())
            seconds = time.monotonic() - started
        self._require(report, "apply")
        summary = _apply_summary(report, seconds, len(log.calls) - calls)
        self.result.add("first apply", summary, first_apply_seconds=seconds)
        with self.reporter.step("apply again (nothing to change)"):
            writes = len(log.writes())
            again = pipeline.plan()
            pipeline.execute(again)
        self.result.add(
            "second apply",
            f"{len(again.changes)} changes, {len(log.writes()) - writes} write calls",
            second_apply_writes=len(log.writes()) - writes,
        )

    def _predict(self, client: ApiClient, heldout: tuple[list[list[float]], list[int]]) -> None:
        rows, labels = heldout
        count = self.settings.requests
        answers: list[tuple[Prediction, int]] = []
        with self.reporter.step(f"send {count} predictions through the API"):
            for index in range(count):
                row = index % len(rows)
                answers.append((client.predict(rows[row]), labels[row]))
        # Repeated features are answered from the API cache: count each prediction once, as
        # first served by the model.
        first: dict[str, tuple[Prediction, int]] = {}
        for answer, truth in answers:
            first.setdefault(answer.prediction_id, (answer, truth))
        served = list(first.values())
        split = Counter(a.variant for a, _ in served)
        total = len(served)
        shares = {v: split[v] / total for v in sorted(split)}
        expected = {v.name: v.weight / 100 for v in self.spec.endpoint.variants}
        self.result.add(
            "A/B split",
            ", ".join(f"{v} {shares.get(v, 0):.0%} (weight {w:.0%})" for v, w in expected.items())
            + f" over {total} served, {count - total} from the API cache",
            split=shares,
            served=total,
            cached=count - total,
        )
        by_variant: dict[str, list[tuple[Prediction, int]]] = defaultdict(list)
        for answer, truth in served:
            by_variant[answer.variant].append((answer, truth))
        for variant, group in sorted(by_variant.items()):
            accuracy = sum(a.label == truth for a, truth in group) / len(group)
            latency = statistics.median(a.latency_ms for a, _ in group)
            self.result.add(
                f"variant {variant} ({group[0][0].version})",
                f"accuracy {accuracy:.3f} on {len(group)} held-out rows, "
                f"median latency {latency:.1f} ms",
                **{f"accuracy_{variant}": accuracy},
            )

    def _stream(
        self,
        pipeline: Pipeline,
        services: LocalServices,
        heldout: tuple[list[list[float]], list[int]],
    ) -> None:
        names, count = pipeline.ctx.names, self.settings.stream_records
        kinesis, ddb = pipeline.aws.client("kinesis"), pipeline.aws.client("dynamodb")
        rows = heldout[0]
        with self.reporter.step(f"stream {count} records through Kinesis"):
            self._wait(lambda: services.poller is not None, "the stream poller to attach")
            records = [
                {
                    "Data": json.dumps({"requestId": f"demo-{i}", "features": rows[i % len(rows)]}),
                    "PartitionKey": f"demo-{i}",
                }
                for i in range(count)
            ]
            for start in range(0, count, 500):
                kinesis.put_records(StreamName=names.stream, Records=records[start : start + 500])

            def stored() -> int:
                pages = ddb.get_paginator("scan").paginate(
                    TableName=names.predictions_table,
                    FilterExpression="#s = :s",
                    ExpressionAttributeNames={"#s": "source"},
                    ExpressionAttributeValues={":s": {"S": "stream"}},
                    Select="COUNT",
                )
                return sum(page["Count"] for page in pages)

            self._wait(lambda: stored() >= count, f"{count} stream predictions in DynamoDB")
        poller = services.poller
        self.result.add(
            "stream",
            f"{stored()} of {count} records stored once, in {poller.invocations if poller else 0} "
            "handler invocations",
            stream_stored=stored(),
        )

    def _rollback(
        self,
        runner: deployments.Runner,
        client: ApiClient,
        heldout: tuple[list[list[float]], list[int]],
    ) -> None:
        rows = heldout[0]
        with self.reporter.step("roll back to v1.0.0"):
            started = time.monotonic()
            outcome = deployments.rollback(runner)
            probes = 0
            streak = 0
            while streak < 20:  # twenty answers in a row from the old version
                answer = client.predict(rows[probes % len(rows)], fresh=f"-probe-{probes}")
                probes += 1
                streak = streak + 1 if answer.version == outcome.active_after else 0
                if time.monotonic() - started > 60:
                    raise MlpipeError("requests were still served by the new version after 60s")
            until = time.monotonic() - started
        self.result.add(
            "rollback",
            f"{outcome.seconds:.2f}s ({outcome.steps[0]}); every request served by "
            f"{outcome.active_after} {until:.2f}s after it started",
            rollback_seconds=outcome.seconds,
            rollback_served_seconds=until,
        )

    def _canary(
        self,
        runner: deployments.Runner,
        client: ApiClient,
        heldout: tuple[list[list[float]], list[int]],
    ) -> tuple[str, datetime]:
        """Promote the faulty version by canary under traffic: its errors become metrics, an
        alarm fires from them, and the promotion rolls back by itself. Returns the alarm and
        when the canary began."""
        from mlpipe.examples.models import FAULTY_VERSION

        ctx, rows = runner.ctx, heldout[0]
        stop, first_bad, counts = threading.Event(), [], Counter[str]()

        def traffic() -> None:
            sent = 0
            while not stop.is_set():
                try:
                    client.predict(rows[sent % len(rows)], fresh=f"-canary-{sent}")
                    counts["good"] += 1
                except MlpipeError as exc:
                    if ": 502 " in str(exc):  # the endpoint failed the request
                        counts["bad"] += 1
                        if not first_bad:
                            first_bad.append(time.time())
                sent += 1
                stop.wait(0.005)

        canary = deployments.Canary(CANARY_STEPS, CANARY_WATCH_SECONDS, poll=ALARM_INTERVAL)
        since = datetime.now(UTC)
        sender = threading.Thread(target=traffic, name="demo-traffic", daemon=True)
        title = f"promote the faulty {FAULTY_VERSION} by canary {CANARY_STEPS} under traffic"
        with self.reporter.step(title):
            sender.start()
            try:
                deployments.promote(runner, FAULTY_VERSION, canary)
            except deployments.PromotionAborted as exc:
                aborted, restored = str(exc), time.time()
            else:
                raise MlpipeError(f"the faulty {FAULTY_VERSION} was promoted: no alarm fired")
            finally:
                stop.set()
                sender.join()
        fired = _first_alarm(ctx, since)
        if not first_bad or fired is None:
            raise MlpipeError(
                f"the canary was rolled back without a bad answer or an alarm: {aborted}"
            )
        alarm, reason, fired_at = fired
        step = re.search(r" at (\d+%)", aborted)
        seconds = restored - first_bad[0]
        period = self.spec.monitoring.period_seconds
        self.result.add(
            f"canary {FAULTY_VERSION} (faulty)",
            f"rolled back automatically at {step[1] if step else '?'}: alarm {alarm} fired "
            f"{fired_at - first_bad[0]:.2f}s after the first bad answer ({reason}); "
            f"{seconds:.2f}s from the first bad answer to full rollback; {counts['bad']} of "
            f"{counts['good'] + counts['bad']} answers failed. Alarm periods are scaled "
            f"{TIME_SCALE:g}x on this embedded AWS: a {period}s period lasts "
            f"{period / TIME_SCALE:g}s",
            canary_rollback_seconds=seconds,
            canary_alarm=alarm,
        )
        return alarm, since

    def _alarm_history(self, ctx: Context, alarm: str, since: datetime) -> None:
        """The fired alarm's state changes since the canary began, from its history: by now
        (a scaled period later) it is back to OK."""
        items = ctx.aws.client("cloudwatch").describe_alarm_history(
            AlarmName=alarm,
            HistoryItemType="StateUpdate",
            StartDate=since,
            ScanBy="TimestampAscending",
        )["AlarmHistoryItems"]
        changes = [(i["Timestamp"], i["HistorySummary"]) for i in items]
        history = ", ".join(
            f"{summary.removeprefix('Alarm updated from ')} at {when:%H:%M:%S.%f}"[:-3]
            for when, summary in changes
        )
        self.result.add("alarm history", f"{alarm}: {history}", alarm_history=changes)

    def _batch(
        self,
        pipeline: Pipeline,
        services: LocalServices,
        heldout: tuple[list[list[float]], list[int]],
    ) -> None:
        names, aws = pipeline.ctx.names, pipeline.aws
        run_id = f"demo-{int(time.time())}"
        rows = [json.dumps({"id": f"row-{i}", "features": r}) for i, r in enumerate(heldout[0])]
        parts = BATCH_INPUT_PARTS
        for part in range(parts):  # input arrives in parts; the shards split the parts' chunks
            body = "\n".join(rows[part::parts]).encode()
            aws.client("s3").put_object(
                Bucket=names.data_bucket, Key=f"input/{run_id}/part-{part}.jsonl", Body=body
            )
        workflow = LocalWorkflow(
            aws,
            Arns(pipeline.ctx).state_machine,
            services.runtime.endpoint_url,
            services.metrics,
            services.logs,
        )
        with self.reporter.step(f"run the batch workflow ({self.spec.batch.shards} shards)"):
            run = workflow.run(run_id, timeout=self.settings.batch_shards_timeout)
        if not run.ok:
            raise MlpipeError(f"batch workflow failed: {[s.log_tail for s in run.shards]}")
        objects = (
            aws.client("s3")
            .list_objects_v2(Bucket=names.data_bucket, Prefix="predictions/")
            .get("Contents", [])
        )
        outputs = [o for o in objects if f"run={run_id}" in o["Key"]]
        scored = 0
        for obj in outputs:
            body = aws.client("s3").get_object(Bucket=names.data_bucket, Key=obj["Key"])["Body"]
            scored += sum(1 for line in body.read().splitlines() if line.strip())
        per_shard = ", ".join(f"{s.branch} {s.summary.get('scored', '?')}" for s in run.shards)
        self.result.add(
            "batch",
            f"{scored} of {len(heldout[0])} records scored ({per_shard}) into {len(outputs)} "
            "objects under predictions/",
            batch_scored=scored,
        )

    def _wait(self, done: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise MlpipeError(f"gave up waiting for {what} after {timeout:.0f}s")
            time.sleep(0.1)


def _first_alarm(ctx: Context, since: datetime) -> tuple[str, str, float] | None:
    """The first of the pipeline's alarms to go to ALARM since ``since``: its name, the reason
    CloudWatch gave, and when (epoch seconds), from the alarms' history."""
    from mlpipe.resources.monitoring import alarm_rules

    cloudwatch, first = ctx.aws.client("cloudwatch"), None
    for rule in alarm_rules(ctx):
        name = ctx.names.alarm(rule.purpose)
        items = cloudwatch.describe_alarm_history(
            AlarmName=name,
            HistoryItemType="StateUpdate",
            StartDate=since,
            ScanBy="TimestampAscending",
        )["AlarmHistoryItems"]
        for item in items:
            new = json.loads(item.get("HistoryData") or "{}").get("newState", {})
            if new.get("stateValue") == "ALARM" and (first is None or item["Timestamp"] < first[0]):
                first = (item["Timestamp"], name, new.get("stateReason", ""))
                break
    if first is None:
        return None
    when, name, reason = first
    return name, reason, when.timestamp()
