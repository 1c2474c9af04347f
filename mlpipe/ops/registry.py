"""The model registry: versions, their artifacts in S3 and their metadata in Parameter Store."""

from __future__ import annotations

import base64
import hashlib
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from botocore.exceptions import ClientError

from mlpipe.context import PipelineContext
from mlpipe.core import images
from mlpipe.core.diff import tags_to_list
from mlpipe.core.errors import MlpipeError, UsageError, error_code
from mlpipe.core.find import find
from mlpipe.ops.lock import operation_lock
from mlpipe.ops.state import load_state
from mlpipe.resources.artifacts import content_key, pack
from mlpipe.resources.ssm import is_registered
from mlpipe.spec import check_version


def require_version(version: str) -> str:
    """`version` if it is a model version, else a UsageError saying why."""
    try:
        return check_version(version)
    except ValueError as exc:
        raise UsageError(f"{exc} (semantic version with a v)") from exc


def parse_baseline(text: str | None) -> dict[str, float]:
    """`accuracy=0.95,latency=100`, or a JSON/YAML file of name: number."""
    if not text:
        return {}
    path = Path(text)
    if path.is_file():
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, yaml.YAMLError, RecursionError) as exc:
            raise UsageError(f"{path}: not a YAML or JSON file of name: number pairs") from exc
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
        parsed = {str(name): float(value) for name, value in pairs}
    except (TypeError, ValueError) as exc:
        raise UsageError(f"--baseline: every value must be a number ({exc})") from exc
    for name, number in parsed.items():
        if not math.isfinite(number) or number < 0:
            raise UsageError(f"--baseline: {name}={number} is not a finite number from 0")
    return parsed


def metadata(ctx: PipelineContext, version: str) -> dict[str, Any] | None:
    found = find(ctx.aws.client("ssm"), "get_parameter", Name=ctx.names.metadata_param(version))
    return None if found is None else dict(json.loads(found["Parameter"]["Value"]))


def require_registered(ctx: PipelineContext, version: str) -> dict[str, Any]:
    require_version(version)
    meta = metadata(ctx, version)
    if not is_registered(meta):
        raise UsageError(
            f"{version} is not registered: `mlpipe models register {version} PATH` uploads it"
        )
    assert meta is not None
    return meta


def _sha256_of(ctx: PipelineContext, s3_path: str) -> str | None:
    """The sha256 (hex) of an artifact in S3; None when it is missing. S3's own SHA-256
    checksum when the upload carried one, else the bytes hashed as they stream."""
    bucket, _, key = s3_path.removeprefix("s3://").partition("/")
    s3 = ctx.aws.client("s3")
    head = find(s3, "head_object", Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    if head is None:
        return None
    checksum = head.get("ChecksumSHA256")
    if checksum and "-" not in checksum:  # a multipart upload's is a checksum of checksums
        return base64.b64decode(checksum).hex()
    digest = hashlib.sha256()
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    for chunk in iter(lambda: body.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


def require_deployable(ctx: PipelineContext, version: str) -> dict[str, Any]:
    """A registered version whose artifact is in S3 with the sha256 it was registered with."""
    meta = require_registered(ctx, version)
    found = _sha256_of(ctx, str(meta.get("s3Path", "")))
    if found is None:
        raise MlpipeError(
            f"{version}: its artifact {meta.get('s3Path')} is missing: register it again with "
            f"`mlpipe models register {version} PATH --force`"
        )
    if found != meta["sha256"]:
        raise MlpipeError(
            f"{version}: the artifact {meta.get('s3Path')} has sha256 {found[:12]}…, not the "
            f"registered {meta['sha256'][:12]}…: it was changed behind the registry; register "
            "it again with --force"
        )
    takes = meta.get("featureCount")
    expected = ctx.spec.lambdas.feature_count
    if takes and expected and takes != expected:
        raise UsageError(
            f"{version} takes {takes} features; the handlers accept {expected} "
            "(lambdas.feature_count): every request would be refused"
        )
    return meta


def register(
    ctx: PipelineContext,
    version: str,
    path: Path,
    *,
    baseline: dict[str, float] | None = None,
    image: str | None = None,
    force: bool = False,
    now: datetime | None = None,
    feature_count: int | None = None,
) -> dict[str, Any]:
    """Upload a model version's artifact and record its metadata; refuse to overwrite."""
    require_version(version)
    body = pack(path)  # validates the input before anything is written
    if is_registered(metadata(ctx, version)) and not force:
        raise UsageError(f"{version} is already registered; pass --force to replace it")
    with operation_lock(ctx, f"register {version}"):
        return _register(ctx, version, body, baseline, image, force, now, feature_count)


def _register(
    ctx: PipelineContext,
    version: str,
    body: bytes,
    baseline: dict[str, float] | None,
    image: str | None,
    force: bool,
    now: datetime | None,
    feature_count: int | None,
) -> dict[str, Any]:
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
            ChecksumAlgorithm="SHA256",
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
    feature_count = feature_count or (existing or {}).get("featureCount")
    if feature_count:
        meta["featureCount"] = int(feature_count)  # what the model takes: checked on promote
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


def versions(ctx: PipelineContext) -> list[dict[str, Any]]:
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


def known_versions(ctx: PipelineContext) -> list[str]:
    """Every version with a metadata parameter in the registry."""
    prefix = f"{ctx.names.ssm_prefix}/models/versions/"
    pages = (
        ctx.aws.client("ssm")
        .get_paginator("describe_parameters")
        .paginate(
            ParameterFilters=[{"Key": "Path", "Option": "Recursive", "Values": [prefix[:-1]]}]
        )
    )
    return sorted(
        p["Name"].removeprefix(prefix).removesuffix("/metadata")
        for page in pages
        for p in page["Parameters"]
        if p["Name"].endswith("/metadata")
    )


def active_version(ctx: PipelineContext) -> str | None:
    found = find(ctx.aws.client("ssm"), "get_parameter", Name=ctx.names.active_version_param)
    return None if found is None else str(found["Parameter"]["Value"])
