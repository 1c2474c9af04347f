"""SageMaker in the embedded AWS, as the API reference describes it.

- Endpoints go ``Creating`` -> ``InService`` (or ``Failed``) and ``Updating`` -> ``InService``
  after :data:`mlpipe.local.moto_ext.ENDPOINT_TRANSITION_SECONDS` (on
  :data:`mlpipe.local.moto_ext.clock`), observed on the next read of the endpoint.
- ``UpdateEndpoint``; ``UpdateEndpointWeightsAndCapacities`` also passes through ``Updating``,
  is refused while an endpoint is in progress, and keeps the properties it is not given.
- ``CreateModel`` checks what AWS checks before it accepts a model: the model data must exist
  (``Could not find model data at s3://...``; moto creates a model from any URL), and the image
  must be in the model's region (``Region of "<image>" does not match expected region of
  <region>. Cross region ECR image pulls are not allowed.``).
- ``CreateModel`` keeps ``EnableNetworkIsolation`` and ``DescribeModel`` returns it (moto drops
  the flag; https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateModel.html).
"""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.s3.models import s3_backends
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.models import FakeEndpoint, SageMakerModelBackend
from moto.sagemaker.responses import SageMakerResponse
from moto.sagemaker.utils import arn_formatter

from mlpipe.local import moto_ext
from mlpipe.local.moto_ext import install_declared, new_method, wrapper_of

ECR_REGION = re.compile(r"^\d{12}\.dkr\.ecr(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/")
_lock = threading.RLock()

_IN_PROGRESS = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"})


@dataclass
class _Transition:
    """Work SageMaker is doing on an endpoint, finished at ``due`` (on the ``clock``)."""

    kind: str  # "create" | "update" | "weights"
    due: float
    config_name: str = ""
    variants: list[dict[str, Any]] = field(default_factory=list)
    data_capture_config: dict[str, Any] = field(default_factory=dict)
    retain: bool = False
    excluded: frozenset[str] = frozenset()


transitions: weakref.WeakKeyDictionary[FakeEndpoint, _Transition] = weakref.WeakKeyDictionary()


def _begin(endpoint: FakeEndpoint, status: str, transition: _Transition) -> None:
    endpoint.endpoint_status = status
    endpoint.last_modified_time = utcnow()
    transitions[endpoint] = transition


def _due() -> float:
    return moto_ext.clock() + moto_ext.ENDPOINT_TRANSITION_SECONDS


def _missing_model(backend: SageMakerModelBackend, variants: list[dict[str, Any]]) -> str | None:
    for variant in variants:
        name = variant.get("ModelName")
        if name and name not in backend._models:
            arn = arn_formatter("model", name, backend.account_id, backend.region_name)
            return f'Could not find model "{arn}".'
    return None


# A variant property of an endpoint and the fields of a described variant that carry it.
_VARIANT_PROPERTIES = {
    "DesiredWeight": ("DesiredWeight", "CurrentWeight"),
    "DesiredInstanceCount": ("DesiredInstanceCount", "CurrentInstanceCount"),
}


def _retained(
    old: list[dict[str, Any]], new: list[dict[str, Any]], excluded: frozenset[str]
) -> list[dict[str, Any]]:
    """New variants, keeping the weights and instance counts of variants already deployed."""
    current = {variant["VariantName"]: variant for variant in old}
    for variant in new:
        previous = current.get(variant["VariantName"])
        if previous is not None:
            kept = [prop for prop in _VARIANT_PROPERTIES if prop not in excluded]
            _carry(variant, previous, kept, drop_missing=False)
    return new


def _carry(
    variant: dict[str, Any], previous: dict[str, Any], props: list[str], *, drop_missing: bool
) -> None:
    """Copy the fields that carry ``props`` from ``previous`` into ``variant`` (and, with
    ``drop_missing``, remove those ``previous`` lacks)."""
    for prop in props:
        for key in _VARIANT_PROPERTIES[prop]:
            if key in previous:
                variant[key] = previous[key]
            elif drop_missing:
                variant.pop(key, None)


def _finish(backend: SageMakerModelBackend, endpoint: FakeEndpoint, work: _Transition) -> None:
    endpoint.last_modified_time = utcnow()
    if work.kind == "weights":
        endpoint.endpoint_status = "InService"
        return
    failure = _missing_model(backend, work.variants)
    if work.kind == "create":
        endpoint.endpoint_status = "Failed" if failure else "InService"
        endpoint.failure_reason = failure
        return
    # An update that cannot be deployed leaves the endpoint serving its previous configuration.
    endpoint.endpoint_status = "InService"
    endpoint.failure_reason = failure
    endpoint.pending_deployment_summary = None
    if failure:
        return
    variants = endpoint._process_production_variants(work.variants)
    if work.retain:
        variants = _retained(endpoint.production_variants, variants, work.excluded)
        if "DataCaptureConfig" in work.excluded:
            endpoint.data_capture_config = work.data_capture_config
    else:
        endpoint.data_capture_config = work.data_capture_config
    endpoint.production_variants = variants
    endpoint.endpoint_config_name = work.config_name


def _settle(backend: SageMakerModelBackend) -> None:
    """Finish the endpoint transitions that are due."""
    now = moto_ext.clock()
    for endpoint in list(backend.endpoints.values()):
        work = transitions.get(endpoint)
        if work is not None and now >= work.due:
            del transitions[endpoint]
            _finish(backend, endpoint, work)


@wrapper_of(SageMakerModelBackend, "describe_endpoint", "list_endpoints")
def _settled(original: Callable[..., Any]) -> Callable[..., Any]:
    def method(self: SageMakerModelBackend, *args: Any, **kwargs: Any) -> Any:
        with _lock:
            _settle(self)
            return original(self, *args, **kwargs)

    return method


def _refuse_in_progress(backend: SageMakerModelBackend, endpoint_name: str) -> FakeEndpoint:
    endpoint = backend.endpoints.get(endpoint_name)
    arn = FakeEndpoint.arn_formatter(endpoint_name, backend.account_id, backend.region_name)
    if endpoint is None:
        raise ValidationError(message=f'Could not find endpoint "{arn}".')
    if endpoint.endpoint_status in _IN_PROGRESS:
        raise ValidationError(message=f'Cannot update in-progress endpoint "{arn}".')
    if endpoint.endpoint_status != "InService":
        raise ValidationError(
            message=f'Cannot update endpoint "{arn}" in status {endpoint.endpoint_status}.'
        )
    return endpoint


@new_method(SageMakerModelBackend, "update_endpoint")
def _update_endpoint(
    self: SageMakerModelBackend,
    endpoint_name: str,
    endpoint_config_name: str,
    retain_all_variant_properties: bool = False,
    exclude_retained_variant_properties: list[dict[str, str]] | None = None,
    deployment_config: dict[str, Any] | None = None,
    retain_deployment_config: bool = False,
) -> str:
    with _lock:
        _settle(self)
        endpoint = _refuse_in_progress(self, endpoint_name)
        config = self.endpoint_configs.get(endpoint_config_name)
        if config is None:
            raise ValidationError(
                message=f'Could not find endpoint configuration "{endpoint_config_name}".'
            )
        work = _Transition(
            kind="update",
            due=_due(),
            config_name=endpoint_config_name,
            variants=[dict(variant) for variant in config.production_variants],
            data_capture_config=config.data_capture_config,
            retain=bool(retain_all_variant_properties),
            excluded=frozenset(
                item["VariantPropertyType"] for item in exclude_retained_variant_properties or []
            ),
        )
        if deployment_config or not retain_deployment_config:
            endpoint.last_deployment_config = deployment_config
        endpoint.pending_deployment_summary = {
            "EndpointConfigName": endpoint_config_name,
            "ProductionVariants": _pending_variants(config.production_variants),
            "StartTime": utcnow(),
        }
        _begin(endpoint, "Updating", work)
        return endpoint.arn


def _pending_variants(variants: list[dict[str, Any]]) -> list[dict[str, Any]]:
    pending = []
    for variant in variants:
        summary: dict[str, Any] = {"VariantName": variant["VariantName"]}
        for source, target in (
            ("InitialVariantWeight", "DesiredWeight"),
            ("InitialInstanceCount", "DesiredInstanceCount"),
            ("InstanceType", "InstanceType"),
            ("ServerlessConfig", "DesiredServerlessConfig"),
        ):
            if source in variant:
                summary[target] = variant[source]
        pending.append(summary)
    return pending


@wrapper_of(SageMakerModelBackend, "create_endpoint")
def _create_endpoint(original: Callable[..., FakeEndpoint]) -> Callable[..., FakeEndpoint]:
    def create_endpoint(
        self: SageMakerModelBackend,
        endpoint_name: str,
        endpoint_config_name: str,
        tags: list[dict[str, str]],
    ) -> FakeEndpoint:
        with _lock:
            endpoint = original(self, endpoint_name, endpoint_config_name, tags)
            config = self.endpoint_configs[endpoint_config_name]
            work = _Transition(
                kind="create",
                due=_due(),
                config_name=endpoint_config_name,
                variants=[dict(variant) for variant in config.production_variants],
            )
            _begin(endpoint, "Creating", work)
            return endpoint

    return create_endpoint


@wrapper_of(SageMakerModelBackend, "update_endpoint_weights_and_capacities")
def _update_weights(original: Callable[..., str]) -> Callable[..., str]:
    def update_endpoint_weights_and_capacities(
        self: SageMakerModelBackend,
        endpoint_name: str,
        desired_weights_and_capacities: list[dict[str, Any]],
    ) -> str:
        with _lock:
            _settle(self)
            endpoint = _refuse_in_progress(self, endpoint_name)
            before = [dict(variant) for variant in endpoint.production_variants]
            arn = original(self, endpoint_name, desired_weights_and_capacities)
            _keep_omitted(before, endpoint.production_variants, desired_weights_and_capacities)
            _begin(endpoint, "Updating", _Transition(kind="weights", due=_due()))
            return arn

    return update_endpoint_weights_and_capacities


def _keep_omitted(
    before: list[dict[str, Any]], after: list[dict[str, Any]], request: list[dict[str, Any]]
) -> None:
    """Give back the properties a weights-and-capacities request left out: AWS keeps them,
    moto would clear them (a weight-only change would drop the instance counts)."""
    previous = {variant["VariantName"]: variant for variant in before}
    changes = {change["VariantName"]: change for change in request}
    for variant in after:
        change = changes.get(variant["VariantName"])
        if change is not None:
            omitted = [prop for prop in _VARIANT_PROPERTIES if change.get(prop) is None]
            _carry(variant, previous[variant["VariantName"]], omitted, drop_missing=True)


@new_method(SageMakerResponse, "update_endpoint")
def _update_endpoint_action(self: SageMakerResponse) -> ActionResult:
    arn = self.sagemaker_backend.update_endpoint(
        endpoint_name=self._get_param("EndpointName"),
        endpoint_config_name=self._get_param("EndpointConfigName"),
        retain_all_variant_properties=self._get_param("RetainAllVariantProperties", False),
        exclude_retained_variant_properties=self._get_param("ExcludeRetainedVariantProperties"),
        deployment_config=self._get_param("DeploymentConfig"),
        retain_deployment_config=self._get_param("RetainDeploymentConfig", False),
    )
    return ActionResult({"EndpointArn": arn})


def _model_data_found(backend: SageMakerModelBackend, url: str) -> bool:
    bucket, _, key = url.removeprefix("s3://").partition("/")
    s3 = s3_backends[backend.account_id][backend.partition]
    if bucket not in s3.buckets:
        return False
    found = s3.buckets[bucket].keys.get(key)
    return found is not None and not getattr(found, "is_delete_marker", False)


def check_container(backend: SageMakerModelBackend, container: dict[str, Any]) -> None:
    image = str(container.get("Image") or "")
    match = ECR_REGION.match(image)
    if match and match.group(1) != backend.region_name:
        raise ValidationError(
            message=f'Region of "{image}" does not match expected region of '
            f"{backend.region_name}. Cross region ECR image pulls are not allowed."
        )
    url = container.get("ModelDataUrl")
    if url and url.startswith("s3://") and not _model_data_found(backend, url):
        raise ValidationError(message=f"Could not find model data at {url}.")


@wrapper_of(SageMakerModelBackend, "create_model")
def _checked_model(original: Callable[..., Any]) -> Callable[..., Any]:
    def create_model(self: SageMakerModelBackend, *args: Any, **kwargs: Any) -> Any:
        containers = [kwargs.get("primary_container") or {}, *(kwargs.get("containers") or [])]
        for container in containers:
            check_container(self, container)
        return original(self, *args, **kwargs)

    return create_model


@wrapper_of(SageMakerResponse, "create_model")
def _network_isolation(original: Callable[..., Any]) -> Callable[..., Any]:
    def create_model(self: SageMakerResponse) -> Any:
        answer = original(self)
        model = self.sagemaker_backend._models[self._get_param("ModelName")]
        model.enable_network_isolation = bool(self._get_param("EnableNetworkIsolation", False))
        return answer

    return create_model


def install() -> None:
    install_declared(__name__)
