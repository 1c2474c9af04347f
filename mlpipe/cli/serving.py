"""`mlpipe predict` and `mlpipe stream put`: send work to the deployed pipeline."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import typer

from mlpipe.cli import validation
from mlpipe.cli.options import local_server, options
from mlpipe.cli.output import emit_json, err
from mlpipe.core.errors import MlpipeError, UsageError

stream_app = typer.Typer(help="Send records to the inference stream.", no_args_is_help=True)


def _feature_count(ctx: typer.Context) -> int | None:
    """The features the served models take, from the spec (read before any AWS call)."""
    from mlpipe.spec import load_spec

    return load_spec(options(ctx).spec).lambdas.feature_count


def predict(
    ctx: typer.Context,
    features: str = typer.Option(..., help="Comma-separated feature values."),
    variant: str | None = typer.Option(None, help="Ask for this variant."),
    version: str | None = typer.Option(None, help="Ask for the variant serving this version."),
    url: str | None = typer.Option(None, help="The API's stage URL (default: found)."),
) -> None:
    """Send one prediction request through the deployed API and print the answer."""
    from mlpipe.ops import registry
    from mlpipe.ops.client import api_client
    from mlpipe.spec import VARIANT_NAME

    values = validation.features(features, count=_feature_count(ctx))
    if variant is not None and not VARIANT_NAME.fullmatch(variant):
        raise UsageError(f"--variant {variant!r}: not a variant name like ModelA")
    if version is not None:
        registry.require_version(version)
    if url is not None:
        validation.endpoint_url(url, "--url")
    pipeline = options(ctx).pipeline()
    if url is None and pipeline.aws.target.local:
        info = local_server().detached_status()
        if info is None or info.api_url is None:
            raise MlpipeError(
                "the embedded AWS is not serving the pipeline's API: start it with "
                "`mlpipe local up --detach` from the directory of config/pipeline.yaml"
            )
        url = f"{info.api_url}/{pipeline.spec.api.stage}"
    answer = api_client(pipeline.ctx, url).predict(values, variant=variant, version=version)
    emit_json(
        {
            "predictionId": answer.prediction_id,
            "invokedVariant": answer.variant,
            "modelVersion": answer.version,
            "predictions": answer.prediction,
            "latencyMs": round(answer.latency_ms, 1),
        }
    )


@stream_app.command("put")
def put(
    ctx: typer.Context,
    features: str | None = typer.Option(None, help="Comma-separated feature values."),
    file: Path | None = typer.Option(None, help='JSON Lines of {"features": [...]}.'),
    count: int = typer.Option(
        1, min=1, max=100_000, help="Send the --features record this many times."
    ),
) -> None:
    """Put records on the inference stream; the stream Lambda scores them in batches."""
    if (features is None) == (file is None):
        raise UsageError("give either --features or --file")
    expected = _feature_count(ctx)
    if file is not None:
        records = validation.records_file(file, expected)
    else:
        row = validation.features(features or "", count=expected)
        records = [{"features": row} for _ in range(count)]
    pipeline = options(ctx).pipeline()
    kinesis = pipeline.aws.client("kinesis")
    entries = []
    for record in records:
        request_id = str(record.get("requestId") or uuid.uuid4())
        body = {**record, "requestId": request_id}
        entries.append({"Data": json.dumps(body).encode(), "PartitionKey": request_id})
    failed = 0
    for start in range(0, len(entries), 500):
        answer = kinesis.put_records(
            StreamName=pipeline.ctx.names.stream, Records=entries[start : start + 500]
        )
        failed += answer.get("FailedRecordCount", 0)
    err(f"Put {len(entries) - failed} records on {pipeline.ctx.names.stream}; {failed} failed.")
    if failed:
        raise typer.Exit(1)
