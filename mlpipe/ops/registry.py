"""The model registry: versions, their artifacts in S3 and their metadata in Parameter Store."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from botocore.exceptions import ClientError

from mlpipe.core import images
from mlpipe.core.context import Context
from mlpipe.core.diff import tags_to_list
from mlpipe.core.errors import MlpipeError, UsageError, error_code, is_not_found
from mlpipe.resources.artifacts import content_key, pack
from mlpipe.resources.sagemaker import load_state
from mlpipe.resources.ssm import is_registered
from mlpipe.spec import VERSION_RE


def check_version(version: str) -> str:
    if not VERSION_RE.match(version):
        raise UsageError(f"{version!r} is not a version like v1.2.3 (semantic version with a v)")
    return version


def parse_baseline(text: str | None) -> dict[str, float]:
    """`accuracy=0.95,latency=100`, or a JSON/YAML file of name: number."""
    if not text:
        return {}
    path = Path(text)
    if path.is_file():
        raw = yaml.safe_load(path.read_text())
        if not isinstance(raw, dict):
            raise UsageError(f"{path}: a baseline file holds name: number pairs")
        pairs = list(raw.items())
    else:
        pairs = []
        for part in text.split(","):
            name, sep, value = part.partition("=")
            if not sep or not name.strip():
                raise UsageError(f"--baseline: {part!r} is not name=number")
            pairs.append((name.strip(), value.strip()))
    try:
        return {str(name): float(value) for name, value in pairs}
    except (TypeError, ValueError) as exc:
        raise UsageError(f"--baseline: every value must be a number ({exc})") from exc


def metadata(ctx: Context, version: str) -> dict[str, Any] | None:
    try:
        value = ctx.aws.client("ssm").get_parameter(Name=ctx.names.metadata_param(version))
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise
    return dict(json.loads(value["Parameter"]["Value"]))


def require_registered(ctx: Context, version: str) -> dict[str, Any]:
    check_version(version)
    meta = metadata(ctx, version)
    if not is_registered(meta):
        raise UsageError(
            f"{version} is not registered: `mlpipe models register {version} PATH` uploads it"
        )
    assert meta is not None
    return meta


def register(
    ctx: Context,
    version: str,
    path: Path,
    *,
    baseline: dict[str, float] | None = None,
    image: str | None = None,
    force: bool = False,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Upload a model version's artifact and record its metadata; refuse to overwrite."""
    check_version(version)
    body = pack(path)  # validates the input before anything is written
    existing = metadata(ctx, version)
    if is_registered(existing) and not force:
        raise UsageError(f"{version} is already registered; pass --force to replace it")
    names = ctx.names
    digest = hashlib.sha256(body).hexdigest()
    key = content_key(digest)  # the same content-addressed place apply uploads artifacts to
    s3 = ctx.aws.client("s3")
    key_arn = ctx.aws.client("kms").describe_key(KeyId=names.kms_alias)["KeyMetadata"]["Arn"]
    try:
        s3.put_object(
            Bucket=names.model_bucket,
            Key=key,
            Body=body,
            ServerSideEncryption="aws:kms",
            SSEKMSKeyId=key_arn,
        )
    except ClientError as exc:
        if error_code(exc) == "NoSuchBucket":
            raise MlpipeError(
                f"bucket {names.model_bucket} does not exist: run `mlpipe apply` first"
            ) from exc
        raise
    meta: dict[str, Any] = {
        "version": version,
        "s3Path": f"s3://{names.model_bucket}/{key}",
        "sha256": digest,
        "size": len(body),
        "registeredAt": (now or datetime.now(UTC)).isoformat(),
        "registeredBy": ctx.aws.caller_arn,
        "image": images.resolve("--image", image, ctx.aws.region)
        if image
        else (existing or {}).get("image")
        or images.resolve("models.image", ctx.spec.models.image, ctx.aws.region),
    }
    merged = {**((existing or {}).get("performanceBaseline") or {}), **(baseline or {})}
    if merged:
        meta["performanceBaseline"] = merged
    params: dict[str, Any] = {
        "Name": names.metadata_param(version),
        "Value": json.dumps(meta, sort_keys=True),
        "Type": "String",
        "Description": f"Model {version}: artifact, image and performance baseline",
    }
    ssm = ctx.aws.client("ssm")
    if existing is None:
        ssm.put_parameter(**params, Tags=tags_to_list(ctx.tags_for(f"ssm:metadata-{version}")))
    else:
        ssm.put_parameter(**params, Overwrite=True)
    return meta


def versions(ctx: Context) -> list[dict[str, Any]]:
    """Every version in the registry, newest registration first, with where it is served."""
    ssm, names = ctx.aws.client("ssm"), ctx.names
    prefix = f"{names.ssm_prefix}/models/versions/"
    metas = [
        json.loads(p["Value"])
        for page in ssm.get_paginator("get_parameters_by_path").paginate(
            Path=prefix, Recursive=True
        )
        for p in page["Parameters"]
        if p["Name"].endswith("/metadata")
    ]
    state = load_state(ctx)
    active = active_version(ctx)
    rows = []
    for meta in metas:
        served = [v for v in (state.variants if state else ()) if v.version == meta["version"]]
        rows.append(
            {
                "version": meta["version"],
                "registered": is_registered(meta),
                "registeredAt": meta.get("registeredAt"),
                "variants": [v.name for v in served],
                "weight": sum(v.weight for v in served),
                "active": meta["version"] == active,
                "performanceBaseline": meta.get("performanceBaseline"),
                "s3Path": meta.get("s3Path"),
            }
        )
    return sorted(rows, key=lambda r: (r["registeredAt"] or "", r["version"]), reverse=True)


def active_version(ctx: Context) -> str | None:
    try:
        param = ctx.aws.client("ssm").get_parameter(Name=ctx.names.active_version_param)
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise
    return str(param["Parameter"]["Value"])
