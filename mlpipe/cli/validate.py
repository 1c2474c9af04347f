"""`mlpipe validate`: check the spec; no AWS call."""

from __future__ import annotations

import typer

from mlpipe.cli.options import options
from mlpipe.cli.output import out


def validate(ctx: typer.Context) -> None:
    """Validate the spec file and show the names it derives."""
    from mlpipe.naming import Names
    from mlpipe.spec import load_spec

    spec = load_spec(options(ctx).spec)
    names = Names(spec.pipeline, spec.environment)
    out.print(
        f"{options(ctx).spec}: valid. Pipeline {names.pipeline_id}: "
        f"{len(spec.endpoint.variants)} variants, {len(spec.models.versions)} model versions.",
        markup=False,
    )
