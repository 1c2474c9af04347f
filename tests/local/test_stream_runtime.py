"""The local stream runtime: the real stream-processor handler fed from the pipeline's Kinesis
stream per its event source mapping, as mlpipe applied them to the embedded AWS."""

from __future__ import annotations

import base64
import contextlib
import json
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from runtime_testing import (
    Clock,
    FakeSageMaker,
    Pipeline,
    converged_pipeline,
    fake_sagemaker_server,
)

from mlpipe.local.functions import LocalFunction, LocalFunctions
from mlpipe.local.stream import MappingConfig, StreamPoller, find_mapping
from mlpipe.resources.lambdas import STREAM_PROCESSOR

WINDOW = 5  # stream.batching_window_seconds in config/pipeline.yaml
BATCH_SIZE = 100  # stream.batch_size
RETRIES = 3  # stream.retry_attempts


@pytest.fixture(scope="module")
def pipeline() -> Iterator[Pipeline]:
    with converged_pipeline() as converged:
        yield converged


@pytest.fixture(scope="module")
def sagemaker() -> Iterator[FakeSageMaker]:
    with fake_sagemaker_server() as fake:
        yield fake


@pytest.fixture
def fake_sagemaker(sagemaker: FakeSageMaker) -> FakeSageMaker:
    sagemaker.reset()
    return sagemaker


class Batches:
    """The sequence numbers of every batch the function received, and its answers."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.event_ids: list[str] = []
        self.answers: list[Any] = []

    def __call__(self, function: LocalFunction, event: Any, outcome: Any) -> None:
        self.batches.append([r["kinesis"]["sequenceNumber"] for r in event["Records"]])
        self.event_ids += [r["eventID"] for r in event["Records"]]
        self.answers.append(outcome.payload if outcome.ok else outcome.error)

    def deliveries(self) -> Counter[str]:
        """How often each record (``shardId:sequenceNumber``) was delivered."""
        return Counter(self.event_ids)


def stream_arn(pipeline: Pipeline) -> str:
    return f"arn:aws:kinesis:us-east-1:{pipeline.ctx.aws.account}:stream/{pipeline.names.stream}"


@contextlib.contextmanager
def polling(pipeline: Pipeline, functions: LocalFunctions, clock: Clock) -> Iterator[StreamPoller]:
    poller = StreamPoller(
        pipeline.clients, functions, pipeline.names.function(STREAM_PROCESSOR), clock=clock
    )
    assert poller.poll_once() == 0  # the first round positions the shards at LATEST
    try:
        yield poller
    finally:
        poller.stop()
        functions.close()


@contextlib.contextmanager
def stream_processor(
    pipeline: Pipeline, sagemaker: FakeSageMaker
) -> Iterator[tuple[StreamPoller, Batches, Clock]]:
    batches, clock = Batches(), Clock()
    functions = pipeline.functions(sagemaker, on_invoke=batches, clock=clock)
    with polling(pipeline, functions, clock) as poller:
        yield poller, batches, clock


def put(
    pipeline: Pipeline, payloads: list[bytes], partition_key: str | None = None
) -> list[tuple[str, str]]:
    """Put the records in order; their (shard, sequence number)."""
    kinesis = pipeline.clients("kinesis")
    found: list[tuple[str, str]] = []
    for start in range(0, len(payloads), 500):
        chunk = payloads[start : start + 500]
        answer = kinesis.put_records(
            StreamName=pipeline.names.stream,
            Records=[
                {"Data": data, "PartitionKey": partition_key or f"key-{start + i}"}
                for i, data in enumerate(chunk)
            ],
        )
        assert answer["FailedRecordCount"] == 0
        found += [(r["ShardId"], r["SequenceNumber"]) for r in answer["Records"]]
    return found


def record(request_id: str, *features: float) -> bytes:
    return json.dumps({"requestId": request_id, "features": list(features)}).encode()


def drain(poller: StreamPoller, clock: Clock, rounds: int = 50) -> None:
    """Poll round after round, letting each batching window pass, until nothing is pending."""
    for _ in range(rounds):
        clock.advance(WINDOW)
        poller.poll_once()
        if poller.pending == 0:
            return
    raise AssertionError(f"{poller.pending} records still pending after {rounds} rounds")


def stored(pipeline: Pipeline, prefix: str) -> Counter[str]:
    """How many stored stream items each request id with ``prefix`` has."""
    paginator = pipeline.clients("dynamodb").get_paginator("scan")
    counts: Counter[str] = Counter()
    for page in paginator.paginate(TableName=pipeline.names.predictions_table):
        for item in page["Items"]:
            prediction_id = item["predictionId"]["S"]
            if prediction_id.startswith(prefix) and item.get("source") == {"S": "stream"}:
                counts[prediction_id] += 1
    return counts


def failure_messages(pipeline: Pipeline) -> list[dict[str, Any]]:
    sqs = pipeline.clients("sqs")
    url = sqs.get_queue_url(QueueName=pipeline.names.stream_dlq)["QueueUrl"]
    found = []
    while True:
        answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        messages = answer.get("Messages", [])
        if not messages:
            return found
        for message in messages:
            found.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


@pytest.fixture
def empty_queue(pipeline: Pipeline) -> None:
    failure_messages(pipeline)


# --- tests -----------------------------------------------------------------------------------


def test_the_runtime_reads_the_mapping_mlpipe_applied(pipeline: Pipeline) -> None:
    arn = pipeline.clients("lambda").get_function(
        FunctionName=pipeline.names.function(STREAM_PROCESSOR)
    )["Configuration"]["FunctionArn"]
    mapping = find_mapping(pipeline.clients, arn)
    assert mapping == MappingConfig(
        uuid=mapping.uuid,
        event_source_arn=stream_arn(pipeline),
        function_arn=arn,
        batch_size=BATCH_SIZE,
        window_seconds=WINDOW,
        starting_position="LATEST",
        starting_timestamp=None,
        bisect=True,
        max_retries=RETRIES,
        max_record_age=-1,
        report_item_failures=True,
        on_failure=(
            f"arn:aws:sqs:us-east-1:{pipeline.ctx.aws.account}:{pipeline.names.stream_dlq}"
        ),
        enabled=True,
    )


def test_250_records_arrive_in_batches_of_at_most_batch_size_and_are_stored_once(
    pipeline: Pipeline, fake_sagemaker: FakeSageMaker
) -> None:
    prefix = "many-"
    early = put(pipeline, [record("early-1", 1.0)])
    with stream_processor(pipeline, fake_sagemaker) as (poller, batches, clock):
        late = put(pipeline, [record(f"{prefix}{i}", float(i), 1.0) for i in range(250)])
        per_shard = Counter(shard for shard, _ in late)
        full = sum(n // BATCH_SIZE for n in per_shard.values())
        assert full >= 1  # 250 records over 2 shards: one shard has at least 125

        poller.poll_once()  # full batches go at once; the rest waits for the window
        assert [len(b) for b in batches.batches] == [BATCH_SIZE] * full
        assert poller.pending == 250 - BATCH_SIZE * full
        clock.advance(WINDOW - 0.5)
        assert poller.poll_once() == 0
        clock.advance(0.5)
        partial = sum(1 for n in per_shard.values() if n % BATCH_SIZE)
        assert poller.poll_once() == partial  # the rest of each shard, in one batch
        assert poller.pending == 0

    assert all(0 < len(b) <= BATCH_SIZE for b in batches.batches)
    deliveries = batches.deliveries()
    assert set(deliveries) == {f"{shard}:{seq}" for shard, seq in late}
    assert set(deliveries.values()) == {1}
    assert "{}:{}".format(*early[0]) not in deliveries  # LATEST: put before reading began
    assert all(answer == {"batchItemFailures": []} for answer in batches.answers)
    assert stored(pipeline, prefix) == {f"{prefix}{i}": 1 for i in range(250)}
    assert poller.delivered == 250 and poller.discarded == 0
    assert {poller.checkpoints[shard] for shard in per_shard} == {
        max((seq for s, seq in late if s == shard), key=int) for shard in per_shard
    }
    assert len(fake_sagemaker.calls) == len(batches.batches)  # one InvokeEndpoint per batch


def test_a_reported_item_failure_is_retried_from_that_record(
    pipeline: Pipeline, fake_sagemaker: FakeSageMaker
) -> None:
    prefix = "retry-"
    fake_sagemaker.nan_for[777.0] = 1  # the first prediction for that record is unstorable
    features = [777.0 if i == 4 else float(i) for i in range(10)]
    with stream_processor(pipeline, fake_sagemaker) as (poller, batches, clock):
        seqs = [
            s
            for _, s in put(
                pipeline, [record(f"{prefix}{i}", f) for i, f in enumerate(features)], "one-shard"
            )
        ]
        assert poller.poll_once() == 0  # read; the batching window starts
        clock.advance(WINDOW)
        assert poller.poll_once() == 1
        assert batches.answers == [{"batchItemFailures": [{"itemIdentifier": seqs[4]}]}]
        assert poller.pending == 6
        assert poller.poll_once() == 1  # the retry, on the next round
        assert poller.pending == 0

    assert batches.batches == [seqs, seqs[4:]]
    assert batches.answers[1] == {"batchItemFailures": []}
    assert stored(pipeline, prefix) == {f"{prefix}{i}": 1 for i in range(10)}
    deliveries = batches.deliveries()
    assert [
        n for _, n in sorted(deliveries.items(), key=lambda pair: int(pair[0].split(":")[1]))
    ] == [1, 1, 1, 1, 2, 2, 2, 2, 2, 2]


@pytest.mark.usefixtures("empty_queue")
def test_a_record_failing_every_retry_is_isolated_and_its_location_sent_to_the_failure_queue(
    pipeline: Pipeline, fake_sagemaker: FakeSageMaker
) -> None:
    prefix = "unstorable-"
    payloads = [record(f"{prefix}{i}", float(i)) for i in range(8)]
    fake_sagemaker.nan_for[3.0] = 1000  # its prediction can never be stored
    with stream_processor(pipeline, fake_sagemaker) as (poller, batches, clock):
        placed = put(pipeline, payloads, "one-shard")
        drain(poller, clock)

    shard, seqs = placed[0][0], [s for _, s in placed]
    attempts = RETRIES + 1
    assert (
        batches.batches
        == [
            seqs,  # fails at record 3: the three before it are checkpointed
            seqs[3:],  # fails at its first record: bisected
            seqs[3:5],  # again: bisected
            *[[seqs[3]]] * attempts,  # alone: the first attempt and every retry
            [seqs[4]],
            seqs[5:],
        ]
    )
    [message] = failure_messages(pipeline)
    assert message["KinesisBatchInfo"] == {
        "shardId": shard,
        "startSequenceNumber": seqs[3],
        "endSequenceNumber": seqs[3],
        "approximateArrivalOfFirstRecord": message["KinesisBatchInfo"][
            "approximateArrivalOfFirstRecord"
        ],
        "approximateArrivalOfLastRecord": message["KinesisBatchInfo"][
            "approximateArrivalOfLastRecord"
        ],
        "batchSize": 1,
        "streamArn": stream_arn(pipeline),
    }
    assert message["KinesisBatchInfo"]["approximateArrivalOfFirstRecord"].endswith("Z")
    context = message["requestContext"]
    assert context["condition"] == "RetryAttemptsExhausted"
    assert context["approximateInvokeCount"] == attempts
    assert context["functionArn"].endswith(f":function:{pipeline.names.function(STREAM_PROCESSOR)}")
    assert message["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
    assert message["version"] == "1.0"
    good = {f"{prefix}{i}": 1 for i in range(8) if i != 3}
    assert stored(pipeline, prefix) == good
    assert poller.checkpoints[shard] == seqs[-1]
    assert (poller.delivered, poller.discarded) == (7, 1)


@pytest.mark.usefixtures("empty_queue")
def test_malformed_records_are_set_aside_with_their_reasons_without_failing_the_batch(
    pipeline: Pipeline, fake_sagemaker: FakeSageMaker
) -> None:
    prefix = "poison-"
    payloads = [record(f"{prefix}{i}", float(i)) for i in range(6)]
    payloads[1] = b"this is not json"
    payloads[2] = b"[" * 100_000 + b"]" * 100_000
    payloads[3] = b'{"features": [1' + b"0" * 5000 + b"]}"
    # As applied with an SQS endpoint in network.interface_endpoints.
    lam = pipeline.clients("lambda")
    function = pipeline.names.function(STREAM_PROCESSOR)
    variables = lam.get_function_configuration(FunctionName=function)["Environment"]["Variables"]
    queue = pipeline.clients("sqs").get_queue_url(QueueName=pipeline.names.stream_dlq)
    with_queue = {**variables, "FAILURE_QUEUE_URL": queue["QueueUrl"]}
    lam.update_function_configuration(FunctionName=function, Environment={"Variables": with_queue})
    try:
        with stream_processor(pipeline, fake_sagemaker) as (poller, batches, clock):
            placed = put(pipeline, payloads, "one-shard")
            drain(poller, clock)
    finally:
        lam.update_function_configuration(
            FunctionName=function, Environment={"Variables": variables}
        )

    seqs = [s for _, s in placed]
    assert batches.batches == [seqs]  # one pass: nothing reported, nothing retried
    messages = sorted(failure_messages(pipeline), key=lambda m: int(m["sequenceNumber"]))
    assert [(m["sequenceNumber"], m["reason"]) for m in messages] == [
        (seqs[1], messages[0]["reason"]),
        (seqs[2], "data is nested too deeply"),
        (seqs[3], "'features[0]' is out of range: a 5001-digit integer"),
    ]
    assert messages[0]["reason"].startswith("data is not base64-encoded JSON")
    assert base64.b64decode(messages[0]["data"]) == b"this is not json"
    assert messages[0]["eventSourceARN"] == stream_arn(pipeline)
    assert stored(pipeline, prefix) == {f"{prefix}{i}": 1 for i in (0, 4, 5)}
    assert poller.checkpoints[placed[0][0]] == seqs[-1]
    assert poller.discarded == 0


@pytest.mark.usefixtures("empty_queue")
def test_without_bisect_the_whole_failing_rest_of_the_batch_is_discarded(
    pipeline: Pipeline, fake_sagemaker: FakeSageMaker
) -> None:
    lam = pipeline.clients("lambda")
    function = pipeline.names.function(STREAM_PROCESSOR)
    arn = lam.get_function(FunctionName=function)["Configuration"]["FunctionArn"]
    uuid = find_mapping(pipeline.clients, arn).uuid
    lam.update_event_source_mapping(
        UUID=uuid, BisectBatchOnFunctionError=False, MaximumRetryAttempts=1
    )
    try:
        payloads = [record(f"nobisect-{i}", float(i)) for i in range(3)]
        fake_sagemaker.nan_for[1.0] = 1000  # record 1 fails every time
        with stream_processor(pipeline, fake_sagemaker) as (poller, batches, clock):
            seqs = [s for _, s in put(pipeline, payloads, "one-shard")]
            drain(poller, clock)
    finally:
        lam.update_event_source_mapping(
            UUID=uuid, BisectBatchOnFunctionError=True, MaximumRetryAttempts=RETRIES
        )
    assert batches.batches == [seqs, seqs[1:], seqs[1:]]
    [message] = failure_messages(pipeline)
    info = message["KinesisBatchInfo"]
    assert (info["startSequenceNumber"], info["endSequenceNumber"]) == (seqs[1], seqs[2])
    assert info["batchSize"] == 2
    assert message["requestContext"]["approximateInvokeCount"] == 2


@pytest.mark.usefixtures("empty_queue")
def test_a_function_error_fails_the_whole_batch_and_is_bisected(
    pipeline: Pipeline, tmp_path: Any
) -> None:
    (tmp_path / "handler.py").write_text(
        "import base64\n"
        "def handler(event, context):\n"
        "    for r in event['Records']:\n"
        "        if base64.b64decode(r['kinesis']['data']) == b'boom':\n"
        "            raise RuntimeError('boom')\n"
        "    return None\n"
    )
    batches, clock = Batches(), Clock()
    functions = LocalFunctions(
        pipeline.clients,
        {pipeline.names.function(STREAM_PROCESSOR): tmp_path},
        endpoint_url=pipeline.aws.endpoint_url,
        region="us-east-1",
        on_invoke=batches,
        clock=clock,
    )
    with polling(pipeline, functions, clock) as poller:
        seqs = [s for _, s in put(pipeline, [b"a", b"boom", b"c", b"d"], "one-shard")]
        drain(poller, clock)
    boom = seqs[1]
    assert batches.batches == [seqs, seqs[:2], [seqs[0]], *[[boom]] * (RETRIES + 1), seqs[2:]]
    [message] = failure_messages(pipeline)
    assert message["responseContext"]["functionError"] == "Unhandled"
    assert message["KinesisBatchInfo"]["startSequenceNumber"] == boom
    assert message["KinesisBatchInfo"]["batchSize"] == 1


def test_the_poller_thread_delivers_and_stops(
    pipeline: Pipeline, fake_sagemaker: FakeSageMaker
) -> None:
    arrived = threading.Event()
    batches, clock = Batches(), Clock()

    def listen(function: LocalFunction, event: Any, outcome: Any) -> None:
        batches(function, event, outcome)
        arrived.set()

    functions = pipeline.functions(fake_sagemaker, on_invoke=listen, clock=clock)
    with polling(pipeline, functions, clock) as poller:
        poller.interval = 0.01
        seqs = [s for _, s in put(pipeline, [record("thread-0", 1.0)], "one-shard")]
        assert poller.poll_once() == 0  # read: its batching window starts now
        clock.advance(WINDOW)
        with poller:
            assert poller.start() is poller
            assert arrived.wait(timeout=60)
        assert poller._thread is None
    assert batches.batches == [seqs]
