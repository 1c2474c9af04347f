"""Data-plane costs: AWS calls per prediction and per stream batch, the batch job's throughput.

On a fresh embedded AWS with the spec applied and the example models registered, the real
handlers run as the embedded AWS runs them (``LocalFunctions``, the local SageMaker runtime):

- the preprocess handler, invoked --requests times in a row: the AWS calls it makes per request
  (its registry read is cached, so it is amortised over the requests);
- the stream handler, invoked with --batches Kinesis batches of --batch-size records: its AWS
  calls per batch;
- the batch workflow on the held-out rows: records per second, against the local runtime's raw
  invoke rate (single-row InvokeEndpoint calls in a loop) in the same run.

Only the handlers' own calls are counted (the calls the embedded AWS's emulation makes to run
them, such as reading the function's configuration, are not).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import _common as common
import boto3
from botocore.client import BaseClient

from mlpipe.examples.models import HELDOUT_FILE, build_examples, read_heldout
from mlpipe.local.functions import LocalFunctions, pipeline_sources
from mlpipe.local.runtime import LocalRuntime
from mlpipe.local.workflow import LocalWorkflow
from mlpipe.naming import Arns
from mlpipe.ops.client import features_hash
from mlpipe.pipeline import Pipeline


@contextmanager
def handler_calls(pipeline: Pipeline) -> Iterator[Counter[str]]:
    """Every API call made on this thread by a client that is not mlpipe's own."""
    counted: Counter[str] = Counter()
    thread, original = threading.get_ident(), BaseClient._make_api_call
    own = pipeline.aws

    def counting(client: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        if threading.get_ident() == thread and client not in own._clients.values():
            counted[f"{client.meta.service_model.service_name}:{operation}"] += 1
        return original(client, operation, params)

    BaseClient._make_api_call = counting  # type: ignore[method-assign]
    try:
        yield counted
    finally:
        BaseClient._make_api_call = original  # type: ignore[method-assign]


def api_event(features: list[float]) -> dict[str, Any]:
    """A POST /predict as API Gateway's proxy integration passes it."""
    return {
        "resource": "/predict",
        "path": "/predict",
        "httpMethod": "POST",
        "headers": {"Content-Type": "application/json", "X-Features-Hash": features_hash(features)},
        "body": json.dumps({"features": features}),
        "isBase64Encoded": False,
        "requestContext": {"stage": "prod", "requestId": "bench"},
    }


def kinesis_event(rows: list[list[float]], first: int, stream_arn: str) -> dict[str, Any]:
    records = []
    for offset, features in enumerate(rows):
        number = first + offset
        data = json.dumps({"requestId": f"bench-{number}", "features": features}).encode()
        records.append(
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": f"bench-{number}",
                    "sequenceNumber": f"{number:056d}",
                    "data": base64.b64encode(data).decode(),
                    "approximateArrivalTimestamp": time.time(),
                },
                "eventSource": "aws:kinesis",
                "eventID": f"shardId-000000000000:{number:056d}",
                "eventSourceARN": stream_arn,
            }
        )
    return {"Records": records}


def per(counted: Counter[str], count: int) -> str:
    parts = ", ".join(f"{call} {n / count:.3f}" for call, n in sorted(counted.items()))
    return f"{sum(counted.values()) / count:.3f} ({parts})"


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=common.SPEC_PATH, help="pipeline spec")
    parser.add_argument("--requests", type=int, default=1000, help="preprocess invocations")
    parser.add_argument("--batches", type=int, default=10, help="stream handler invocations")
    parser.add_argument("--batch-size", type=int, default=100, help="records per stream batch")
    parser.add_argument("--invokes", type=int, default=300, help="raw runtime invocations")
    return parser.parse_args()


def main() -> int:
    args = arguments()
    spec = common.spec(args.spec)
    with common.fresh_pipeline(spec) as pipeline, tempfile.TemporaryDirectory() as work:
        common.run(pipeline)
        ctx, names, aws = pipeline.ctx, pipeline.ctx.names, pipeline.aws
        # The apply registered the spec's example versions; their held-out rows come from a
        # rebuild (byte for byte the committed archives).
        build_examples(Path(work) / "models")
        rows = read_heldout(Path(work) / "models" / HELDOUT_FILE)[0]
        with LocalRuntime(aws, port=0) as runtime:
            functions = LocalFunctions(
                aws.client,
                pipeline_sources(names),
                endpoint_url=str(aws.endpoint_url),
                region=aws.region,
                sagemaker_runtime_url=runtime.endpoint_url,
            )
            try:
                preprocess = names.function("preprocess")
                functions.invoke(preprocess, api_event(rows[0]))  # load it: not counted
                started = time.perf_counter()
                with handler_calls(pipeline) as calls:
                    for index in range(args.requests):
                        answer = functions.invoke(preprocess, api_event(rows[index % len(rows)]))
                        if not answer.ok or answer.payload.get("statusCode") != 200:
                            sys.exit(f"preprocess failed: {answer.payload or answer.error}")
                request_s = (time.perf_counter() - started) / args.requests
                api_calls = per(calls, args.requests)

                stream_fn = names.function("stream-processor")
                stream_arn = aws.client("kinesis").describe_stream_summary(StreamName=names.stream)[
                    "StreamDescriptionSummary"
                ]["StreamARN"]
                batch_rows = [rows[i % len(rows)] for i in range(args.batch_size)]
                functions.invoke(stream_fn, kinesis_event(batch_rows, 0, stream_arn))
                with handler_calls(pipeline) as calls:
                    for batch in range(1, args.batches + 1):
                        event = kinesis_event(batch_rows, batch * args.batch_size, stream_arn)
                        answer = functions.invoke(stream_fn, event)
                        failures = (answer.payload or {}).get("batchItemFailures")
                        if not answer.ok or failures:
                            sys.exit(f"stream batch failed: {answer.payload or answer.error}")
                stream_calls = per(calls, args.batches)
            finally:
                functions.close()

            invoke = boto3.client(
                "sagemaker-runtime",
                endpoint_url=runtime.endpoint_url,
                region_name=aws.region,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
            body = json.dumps({"instances": [rows[0]]})
            started = time.perf_counter()
            for _ in range(args.invokes):
                invoke.invoke_endpoint(
                    EndpointName=names.endpoint, Body=body, ContentType="application/json"
                )
            raw_rate = args.invokes / (time.perf_counter() - started)

            run_id = "bench"
            lines = [json.dumps({"id": f"row-{i}", "features": r}) for i, r in enumerate(rows)]
            aws.client("s3").put_object(
                Bucket=names.data_bucket,
                Key=f"input/{run_id}/part-0.jsonl",
                Body="\n".join(lines).encode(),
            )
            workflow = LocalWorkflow(aws, Arns(ctx).state_machine, runtime.endpoint_url)
            started = time.perf_counter()
            run = workflow.run(run_id, timeout=300)
            batch_s = time.perf_counter() - started
            if not run.ok:
                sys.exit(f"batch workflow failed: {[s.log_tail for s in run.shards]}")

    print(
        f"spec {args.spec.name}; embedded AWS and local runtimes in this process; "
        f"{os.cpu_count()} CPUs"
    )
    print(
        f"preprocess handler: AWS calls per request over {args.requests}: {api_calls}; "
        f"{request_s * 1000:.1f} ms per request"
    )
    print(
        f"stream handler: AWS calls per {args.batch_size}-record batch over {args.batches}: "
        f"{stream_calls}"
    )
    print(
        f"batch workflow: {len(rows)} records in {batch_s:.2f} s = {len(rows) / batch_s:.0f} "
        f"records/s; the runtime's raw invoke rate: {raw_rate:.0f} invocations/s "
        f"(1 record each, {args.invokes} in a row)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
