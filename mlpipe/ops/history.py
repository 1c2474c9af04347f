"""The audit trail: registrations, promotions, traffic shifts and rollbacks, newest first.

Read from Parameter Store's own history: every version of a model's metadata parameter is a
registration, and every version of the deployment-state parameter carries the operation that
wrote it (kind, who, when, what).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from mlpipe.context import PipelineContext
from mlpipe.core.find import not_found
from mlpipe.resources.ssm import is_registered


def parameter_history(ctx: PipelineContext, name: str) -> Iterator[dict[str, Any]]:
    """Every version of parameter `name`, oldest first; none when it does not exist."""
    paginator = ctx.aws.client("ssm").get_paginator("get_parameter_history")
    try:
        for page in paginator.paginate(Name=name):
            yield from page["Parameters"]
    except ClientError as exc:
        if not not_found("ssm", exc):
            raise


def _when(entry: dict[str, Any]) -> str:
    when: datetime = entry["LastModifiedDate"]  # botocore parses timestamps
    return when.isoformat()


def events(ctx: PipelineContext) -> list[dict[str, Any]]:
    names = ctx.names
    found: list[dict[str, Any]] = []
    prefix = f"{names.ssm_prefix}/models/versions/"
    pages = (
        ctx.aws.client("ssm")
        .get_paginator("get_parameters_by_path")
        .paginate(Path=prefix, Recursive=True)
    )
    for param in (p for page in pages for p in page["Parameters"]):
        for entry in parameter_history(ctx, param["Name"]):
            meta = json.loads(entry["Value"])
            if not is_registered(meta):
                continue  # the spec's declaration, not an upload
            found.append(
                {
                    "when": meta.get("registeredAt") or _when(entry),
                    "who": meta.get("registeredBy") or entry.get("LastModifiedUser"),
                    "what": "register",
                    "from": None,
                    "to": meta["version"],
                    "detail": f"{meta.get('s3Path')} sha256 {(meta.get('sha256') or '-')[:12]}",
                }
            )
    previous: dict[str, Any] | None = None
    for entry in parameter_history(ctx, names.deployment_param):
        state = json.loads(entry["Value"])
        operation = state.get("operation") or {}
        served = {v["name"]: f"{v['version']}@{v['weight']}%" for v in state["variants"]}
        found.append(
            {
                "when": operation.get("at") or _when(entry),
                "who": operation.get("by") or entry.get("LastModifiedUser"),
                "what": operation.get("kind", "apply"),
                "from": _served(previous),
                "to": ", ".join(f"{k} {v}" for k, v in served.items()),
                "detail": operation.get("summary", "deployment state written by apply"),
            }
        )
        previous = state
    return sorted(found, key=lambda e: e["when"], reverse=True)


def _served(state: dict[str, Any] | None) -> str | None:
    if state is None:
        return None
    return ", ".join(f"{v['name']} {v['version']}@{v['weight']}%" for v in state["variants"])
