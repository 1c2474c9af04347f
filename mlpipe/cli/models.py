"""`mlpipe models register|list|show`: the model registry."""

from __future__ import annotations

from pathlib import Path

import typer

from mlpipe.cli import validation
from mlpipe.cli.options import options
from mlpipe.cli.output import emit, emit_json, err, out
from mlpipe.core.errors import UsageError

app = typer.Typer(help="Register and inspect model versions.", no_args_is_help=True)


@app.command()
def register(
    ctx: typer.Context,
    version: str = typer.Argument(..., help="Semantic version with a v, e.g. v2.0.0."),
    path: Path = typer.Argument(..., help="A model directory or a model.tar.gz."),
    baseline: str | None = typer.Option(
        None, help="Performance baseline: accuracy=0.95,latency=100, or a JSON/YAML file."
    ),
    image: str | None = typer.Option(None, help="Inference image (default: the spec's)."),
    force: bool = typer.Option(False, "--force", help="Replace a registered version."),
    feature_count: int | None = typer.Option(
        None, min=1, max=100_000, help="Features the model takes (checked on promote)."
    ),
) -> None:
    """Upload a model version (SSE-KMS) and record its metadata in Parameter Store."""
    from mlpipe.ops import registry

    registry.require_version(version)
    validation.existing_path(path, "PATH")
    parsed = registry.parse_baseline(baseline)
    pipeline = options(ctx).pipeline()
    meta = registry.register(
        pipeline.ctx,
        version,
        path,
        baseline=parsed,
        image=image,
        force=force,
        feature_count=feature_count,
    )
    err(f"Registered {version}: {meta['s3Path']} ({meta['size']} bytes, sha256 {meta['sha256']})")
    emit_json(meta)


@app.command("list")
def list_versions(
    ctx: typer.Context,
    json_output: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Every version: where it is served, its weight, whether it is active."""
    from mlpipe.cli.render import versions_table
    from mlpipe.ops import registry

    emit(registry.versions(options(ctx).pipeline().ctx), json_output, versions_table)


@app.command()
def example(
    out_dir: Path = typer.Option(Path("examples"), "--out", help="Where to write them."),
    seed: int = typer.Option(0, help="Seed of the split and the training."),
    faulty: str | None = typer.Option(
        None,
        help="Also build v3.0.0, a faulty version: 'errors' (status 500 on half the requests) "
        "or 'slow' (every answer 2.5 s late), to see a canary roll back.",
    ),
) -> None:
    """Build the example model versions (scikit-learn, breast cancer data)."""
    try:
        from mlpipe.examples.models import build_examples
    except ImportError as exc:  # pragma: no cover - the demo extra is missing
        raise UsageError("the examples need scikit-learn: pip install 'mlpipe[demo]'") from exc
    if faulty is not None and faulty not in ("errors", "slow"):
        raise UsageError(f"--faulty {faulty!r}: use errors or slow")
    built = build_examples(out_dir, seed, faulty)
    for model in built:
        out.print(
            f"{model.version}: {model.path} accuracy {model.accuracy:.3f} "
            f"(mlpipe models register {model.version} {model.path} "
            f"--baseline accuracy={model.accuracy:.4f},latency={model.latency_ms:.1f})",
            markup=False,
        )


@app.command()
def show(ctx: typer.Context, version: str = typer.Argument(...)) -> None:
    """One version's metadata."""
    from mlpipe.ops import registry

    registry.require_version(version)
    meta = registry.metadata(options(ctx).pipeline().ctx, version)
    if meta is None:
        raise UsageError(f"{version} is not in the registry")
    emit_json(meta)
