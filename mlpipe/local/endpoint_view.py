"""What an endpoint of the embedded AWS serves, read as SageMaker's front end reads it, and the
variant a request goes to (:mod:`mlpipe.local.runtime` serves the requests).

``DescribeEndpoint`` gives the endpoint's status, its live endpoint configuration and each
variant's ``CurrentWeight``; when the live configuration or the endpoint's ``LastModifiedTime``
changes, ``DescribeEndpointConfig``, ``DescribeModel`` (``ModelDataUrl``) and ``HeadObject`` on
each variant's artifact resolve what each variant runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import ClientError

from mlpipe.core.clients import Aws

__all__ = ["Artifact", "Endpoint", "RuntimeApiError", "Variant", "choose", "describe"]

# Endpoint statuses in which a deployed configuration answers requests; during an update the
# previous configuration serves until the new one is in place.
SERVING_STATUSES = frozenset(
    {"InService", "Updating", "SystemUpdating", "RollingBack", "UpdateRollbackFailed"}
)


class RuntimeApiError(Exception):
    """An error answered as the sagemaker-runtime API answers it: code, HTTP status, fields."""

    def __init__(
        self, code: str, status: int, message: str, fields: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message
        self.fields = dict(fields or {})

    def body(self) -> dict[str, Any]:
        return {"message": self.message, **self.fields}


def validation(message: str) -> RuntimeApiError:
    return RuntimeApiError("ValidationError", 400, message)


def not_found(aws: Aws, name: str) -> RuntimeApiError:
    return validation(f"Endpoint {name} of account {aws.account} not found.")


@dataclass(frozen=True)
class Artifact:
    """What a variant runs: a model's archive in S3 at one ETag/VersionId, or why it cannot."""

    model_name: str
    bucket: str = ""
    key: str = ""
    etag: str = ""
    version_id: str | None = None
    problem: str | None = None


@dataclass(frozen=True)
class Variant:
    name: str
    weight: float
    artifact: Artifact


@dataclass(frozen=True)
class Endpoint:
    name: str
    config_name: str
    last_modified: Any
    configured: dict[str, tuple[Artifact, float]]
    variants: tuple[Variant, ...]
    checked: float


def _parse_s3_url(url: str) -> tuple[str, str] | None:
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or not parts.path.strip("/"):
        return None
    return parts.netloc, parts.path.lstrip("/")


def _model_data_url(model: Mapping[str, Any]) -> str | None:
    containers = [model.get("PrimaryContainer"), *(model.get("Containers") or [])]
    for container in containers:
        if not container:
            continue
        if container.get("ModelDataUrl"):
            return str(container["ModelDataUrl"])
        source = (container.get("ModelDataSource") or {}).get("S3DataSource") or {}
        if source.get("CompressionType") == "Gzip" and source.get("S3Uri"):
            return str(source["S3Uri"])
    return None


def choose(
    endpoint: Endpoint, target: str | None, account: str, draw: Callable[[], float]
) -> Variant:
    """The variant named by ``target``, else one at random in proportion to the live weights
    (``draw`` gives a number in [0, 1))."""
    if target:
        for variant in endpoint.variants:
            if variant.name == target:
                return variant
        raise validation(
            f"Endpoint {endpoint.name} of account {account} has no production "
            f"variant named {target}."
        )
    weighted = [v for v in endpoint.variants if v.weight > 0]
    if not weighted:
        raise validation(
            f"Endpoint {endpoint.name} has no variant with a positive weight; "
            "name a variant with TargetVariant."
        )
    point = draw() * sum(v.weight for v in weighted)
    for variant in weighted:
        point -= variant.weight
        if point < 0:
            return variant
    return weighted[-1]


def describe(aws: Aws, name: str, cached: Endpoint | None, now: float) -> Endpoint:
    """The endpoint as it serves now; what its configuration runs is read again only when the
    configuration or the endpoint changed since ``cached``."""
    sagemaker = aws.client("sagemaker")
    try:
        described = sagemaker.describe_endpoint(EndpointName=name)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("ValidationException", "404"):
            raise not_found(aws, name) from exc
        raise
    if described.get("EndpointStatus") not in SERVING_STATUSES:
        raise not_found(aws, name)
    config_name = described["EndpointConfigName"]
    last_modified = described.get("LastModifiedTime")
    if cached and (cached.config_name, cached.last_modified) == (config_name, last_modified):
        configured = cached.configured
    else:
        configured = _configured(aws, config_name)
    variants = []
    for variant in described.get("ProductionVariants") or []:
        found = configured.get(variant["VariantName"])
        if found is None:
            continue
        artifact, initial_weight = found
        weight = variant.get("CurrentWeight", variant.get("DesiredWeight", initial_weight))
        variants.append(Variant(variant["VariantName"], float(weight), artifact))
    return Endpoint(name, config_name, last_modified, configured, tuple(variants), now)


def _configured(aws: Aws, config_name: str) -> dict[str, tuple[Artifact, float]]:
    """Each variant of an endpoint configuration: its artifact and its initial weight."""
    sagemaker = aws.client("sagemaker")
    config = sagemaker.describe_endpoint_config(EndpointConfigName=config_name)
    artifacts: dict[str, Artifact] = {}
    configured = {}
    for variant in config.get("ProductionVariants") or []:
        model_name = variant["ModelName"]
        if model_name not in artifacts:
            artifacts[model_name] = _artifact(aws, model_name)
        weight = float(variant.get("InitialVariantWeight", 1.0))
        configured[variant["VariantName"]] = (artifacts[model_name], weight)
    return configured


def _artifact(aws: Aws, model_name: str) -> Artifact:
    try:
        model = aws.client("sagemaker").describe_model(ModelName=model_name)
    except ClientError as exc:
        return Artifact(model_name, problem=f"cannot describe model {model_name}: {exc}")
    url = _model_data_url(model)
    location = _parse_s3_url(url) if url else None
    if location is None:
        return Artifact(
            model_name,
            problem=f"model {model_name} has no S3 model.tar.gz (ModelDataUrl: {url}); the "
            "local runtime runs model archives with code/inference.py",
        )
    bucket, key = location
    try:
        head = aws.client("s3").head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        return Artifact(model_name, bucket, key, problem=f"cannot read {url}: {exc}")
    return Artifact(model_name, bucket, key, head.get("ETag", ""), head.get("VersionId") or None)
