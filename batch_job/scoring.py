"""Scoring: request encoding, payload packing and the SageMaker endpoint-backed scorer.

The deployment state is read with ``inference_common`` (``lambdas/common``), the module the
Lambda handlers share: the image carries it beside the ``batch_job`` package."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from botocore.exceptions import ClientError
from inference_common import Deployment, DeploymentStateError, parse_deployment

logger = logging.getLogger(__name__)

_SEPARATORS = (",", ":")

# A scorer takes instances and returns ``(predictions, model_version)``, optionally followed
# by the name of the production variant that served them.
Scorer = Callable[[list[list[float]]], tuple[Any, ...]]


class ScoringError(RuntimeError):
    """The endpoint or the deployment state gave an unusable answer."""


class ScoreResult(NamedTuple):
    predictions: list[Any]
    model_version: str
    variant: str | None = None


def encode_request(instances: Sequence[Sequence[float]]) -> bytes:
    """The InvokeEndpoint body for ``instances``; packing measures exactly this encoding."""
    body = {"instances": [list(instance) for instance in instances]}
    return json.dumps(body, separators=_SEPARATORS).encode("utf-8")


REQUEST_OVERHEAD = len(encode_request([]))


def instance_size(features: Sequence[float]) -> int:
    """Bytes one instance adds to a request body (not counting the separating comma)."""
    return len(json.dumps(list(features), separators=_SEPARATORS).encode("utf-8"))


def fits_alone(size: int, max_bytes: int) -> bool:
    return REQUEST_OVERHEAD + size <= max_bytes


def pack_ranges(sizes: Sequence[int], max_bytes: int) -> Iterator[tuple[int, int]]:
    """Greedy ``(start, end)`` slices whose encoded request stays within ``max_bytes``.

    Every size must fit alone (see :func:`fits_alone`).
    """
    start = 0
    body = REQUEST_OVERHEAD
    for position, size in enumerate(sizes):
        added = size if position == start else size + 1
        if position > start and body + added > max_bytes:
            yield start, position
            start, body = position, REQUEST_OVERHEAD + size
        else:
            body += added
    if start < len(sizes):
        yield start, len(sizes)


@dataclass(frozen=True)
class VersionMap:
    """Maps the production variant that served a request to the model version behind it."""

    deployment: Deployment | None = None
    active_version: str | None = None

    def resolve(self, variant: str | None) -> str:
        version = self.deployment.version_of(variant) if self.deployment else None
        if version is not None:
            return version
        if self.active_version is None:
            raise ScoringError(
                f"variant {variant!r} is not in the deployment state and no active version is set"
            )
        return self.active_version


def _get_parameter(ssm: Any, name: str) -> str | None:
    try:
        return ssm.get_parameter(Name=name)["Parameter"]["Value"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ParameterNotFound":
            logger.warning("parameter not found", extra={"fields": {"parameter": name}})
            return None
        raise


def load_version_map(
    ssm: Any, active_version_param: str, deployment_param: str | None
) -> VersionMap:
    """Read the active version and the deployment state from SSM.

    A missing deployment parameter means no variant mapping; the active version is then used for
    every prediction.
    """
    active = _get_parameter(ssm, active_version_param)
    text = _get_parameter(ssm, deployment_param) if deployment_param else None
    try:
        deployment = parse_deployment(text) if text else None
    except DeploymentStateError as exc:
        raise ScoringError(f"deployment state is malformed: {exc}") from exc
    if active is None and deployment is None:
        raise ScoringError(
            f"neither {active_version_param!r} nor the deployment state names a model version"
        )
    return VersionMap(deployment, active)


class EndpointScorer:
    """Scores instances with one InvokeEndpoint call."""

    def __init__(self, runtime: Any, endpoint_name: str, versions: VersionMap) -> None:
        self._runtime = runtime
        self._endpoint_name = endpoint_name
        self._versions = versions

    def __call__(self, instances: list[list[float]]) -> ScoreResult:
        response = self._runtime.invoke_endpoint(
            EndpointName=self._endpoint_name,
            ContentType="application/json",
            Accept="application/json",
            Body=encode_request(instances),
        )
        raw = response["Body"].read()
        try:
            predictions = json.loads(raw)["predictions"]
        except (ValueError, TypeError, KeyError) as exc:
            raise ScoringError(f"endpoint response has no predictions: {raw[:200]!r}") from exc
        if not isinstance(predictions, list):
            raise ScoringError(f"endpoint predictions are not a list: {raw[:200]!r}")
        variant = response.get("InvokedProductionVariant")
        return ScoreResult(predictions, self._versions.resolve(variant), variant)
