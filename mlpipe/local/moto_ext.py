"""Faithful extensions of moto for the AWS APIs mlpipe uses and moto 5.2 lacks.

Each extension is added to moto's backend and response classes, so it works the same under
``mock_aws`` and in moto's server: moto dispatches an action to the response method named after
it (``UpdateEndpoint`` -> ``update_endpoint``), and that method calls the backend.

Behaviour follows the AWS API references:

- SageMaker ``UpdateEndpoint``; endpoints go ``Creating`` -> ``InService`` (or ``Failed``) and
  ``Updating`` -> ``InService`` after :data:`ENDPOINT_TRANSITION_SECONDS`, observed on the next
  read of the endpoint; ``UpdateEndpointWeightsAndCapacities`` also passes through ``Updating``,
  is refused while an endpoint is in progress, and keeps the properties it is not given.
- Glue ``UpdateCrawler``.
- Athena ``UpdateWorkGroup``.
- CloudWatch alarms that evaluate, notify and keep a history, and percentile statistics
  (:mod:`mlpipe.local.alarms`).
- CloudWatch dashboard tags: ``PutDashboard`` applies ``Tags`` when it creates a dashboard (and
  ignores them on an update), ``TagResource``/``UntagResource``/``ListTagsForResource`` take
  dashboard ARNs, and ``DeleteDashboards`` drops the tags.
- Lambda ``UpdateFunctionConfiguration`` applies ``TracingConfig`` and ``KMSKeyArn``; Kinesis
  ``CreateStream`` applies ``Tags``; API Gateway ``PutIntegration`` keeps
  ``cacheKeyParameters``, and its tagging (``GetTags``, ``TagResource``, ``UntagResource``)
  covers REST APIs, usage plans and API keys, not only stages.
- Batch ``UpdateComputeEnvironment`` applies ``computeResources`` (maxvCpus, subnets, security
  groups); ``DeleteComputeEnvironment`` refuses an ENABLED environment or one a queue uses, and
  ``DeleteJobQueue`` a queue that is not DISABLED. IAM ``CreateServiceLinkedRole`` names Batch's
  role ``AWSServiceRoleForBatch``.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from moto.apigateway.responses import APIGatewayResponse
from moto.athena.models import AthenaBackend
from moto.athena.responses import AthenaResponse
from moto.awslambda.models import LambdaBackend, LambdaFunction
from moto.batch.exceptions import ClientException as BatchClientException
from moto.batch.exceptions import InvalidParameterValueException as BatchInvalidParameter
from moto.batch.models import BatchBackend
from moto.cloudwatch.exceptions import ResourceNotFoundException as CloudWatchNotFound
from moto.cloudwatch.models import CloudWatchBackend
from moto.cloudwatch.responses import CloudWatchResponse
from moto.core.botocore_stubber import BotocoreStubber
from moto.core.exceptions import JsonRESTError
from moto.core.responses import ActionResult, EmptyResult
from moto.core.utils import utcnow
from moto.ec2.exceptions import InvalidSubnetIdError
from moto.glue.exceptions import CrawlerRunningException
from moto.glue.models import FakeCrawler, GlueBackend
from moto.glue.responses import GlueResponse
from moto.iam.access_control import IAMPolicy, PermissionResult
from moto.iam.models import IAMBackend
from moto.kinesis.responses import KinesisResponse
from moto.moto_server.werkzeug_app import DomainDispatcherApplication
from moto.s3.models import FakeBucket
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.models import FakeEndpoint, SageMakerModelBackend
from moto.sagemaker.responses import SageMakerResponse
from moto.sagemaker.utils import arn_formatter

__all__ = [
    "ENDPOINT_TRANSITION_SECONDS",
    "clock",
    "extensions_installed",
    "install_extensions",
    "uninstall_extensions",
]


def _delay_from_env() -> float:
    raw = os.environ.get("MLPIPE_LOCAL_ENDPOINT_DELAY", "")
    try:
        return max(0.0, float(raw)) if raw else 1.0
    except ValueError:
        return 1.0


ENDPOINT_TRANSITION_SECONDS: float = _delay_from_env()
"""How long a SageMaker endpoint stays ``Creating``/``Updating``. Read at each request, so it can
be changed at any time; ``MLPIPE_LOCAL_ENDPOINT_DELAY`` sets it at import."""

clock: Callable[[], float] = time.monotonic
"""Time source, in seconds, for endpoint transitions; replace it to drive time in tests."""

_lock = threading.RLock()
_installed = False
_MISSING = object()
# (class, attribute, what it was before) for every change, so that it can be undone.
_changes: list[tuple[type, str, Any]] = []


def install_extensions() -> None:
    """Add the extensions to moto's classes. Safe to call any number of times."""
    global _installed
    with _lock:
        if _installed:
            return
        _install_serialized_requests()
        _install_policy_conditions()
        _install_sagemaker()
        _install_glue()
        _install_athena()
        _install_cloudwatch()
        _install_serving()
        _install_batch()
        _install_modules()
        _installed = True


def _install_modules() -> None:
    """The extensions that live in modules of their own (``mlpipe/local/ext_*.py``)."""
    from mlpipe.local import (
        alarms,
        ext_consistency,
        ext_enis,
        ext_idempotency,
        ext_lambda,
        ext_models,
        ext_s3_logging,
        ext_sagemaker_models,
        ext_tags,
        ext_wafv2,
        ext_windows,
        faults,
    )

    modules = (
        ext_models,
        ext_windows,
        ext_consistency,
        ext_lambda,
        ext_enis,
        ext_s3_logging,
        ext_sagemaker_models,
        ext_wafv2,
        ext_idempotency,
        ext_tags,
        alarms,
        faults,  # last: in front of everything else
    )
    for module in modules:
        module.install()


def uninstall_extensions() -> None:
    """Give moto's classes back their own behaviour (for tests that need plain moto)."""
    global _installed
    with _lock:
        while _changes:
            cls, name, before = _changes.pop()
            if before is _MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, before)
        _transitions.clear()
        _installed = False


def extensions_installed() -> bool:
    return _installed


# --- registration -------------------------------------------------------------------------------


def _add(cls: type, name: str, function: Callable[..., Any]) -> None:
    """Give ``cls`` a new method; on a response class this makes moto dispatch the action."""
    if name in vars(cls):
        raise RuntimeError(f"{cls.__name__}.{name} already exists; moto may now implement it")
    _changes.append((cls, name, _MISSING))
    setattr(cls, name, function)


def _wrap(cls: type, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    """Replace method ``name`` of ``cls`` by ``make(original)``."""
    original = getattr(cls, name)
    _changes.append((cls, name, vars(cls).get(name, _MISSING)))
    setattr(cls, name, functools.wraps(original)(make(original)))


# --- One request at a time ---------------------------------------------------------------------

# moto's backends are plain dicts and lists, not safe for concurrent requests (a parallel apply
# can fail with "dictionary changed size during iteration"). AWS answers each request
# consistently, so the emulator handles one request at a time.
_requests = threading.RLock()


def _serialized(original: Callable[..., Any]) -> Callable[..., Any]:
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        with _requests:
            return original(self, *args, **kwargs)

    return call


def _install_serialized_requests() -> None:
    _wrap(BotocoreStubber, "__call__", _serialized)  # mock_aws
    _wrap(DomainDispatcherApplication, "__call__", _serialized)  # moto's server


# --- S3 bucket policy evaluation ------------------------------------------------------------------


def _applies_without_context(statement: dict[str, Any]) -> bool:
    """Whether a statement applies to a request whose condition keys are all absent.

    IAM evaluates a condition on a missing key as false (so the statement does not apply),
    except for ``...IfExists`` operators and ``Null: true``, which hold.
    """
    for operator, values in statement.get("Condition", {}).items():
        if operator.endswith("IfExists"):
            continue
        if operator == "Null" and all(str(v).lower() == "true" for v in values.values()):
            continue
        return False
    return True


def _bucket_permission(original: Callable[..., Any]) -> Callable[..., Any]:
    """moto evaluates bucket policies without a request context and treats every condition as
    met, so "deny unless aws:SecureTransport" refuses every request. Evaluate them as IAM does
    for a request that carries no condition keys."""

    def get_permission(self: FakeBucket, action: str, resource: str) -> Any:
        if self.policy is None:
            return original(self, action, resource)
        document = json.loads(self.policy)
        statements = document["Statement"]
        statements = statements if isinstance(statements, list) else [statements]
        applicable = [
            {k: v for k, v in s.items() if k != "Condition"}
            for s in statements
            if _applies_without_context(s)
        ]
        if not applicable:
            return PermissionResult.NEUTRAL
        policy = IAMPolicy(json.dumps({**document, "Statement": applicable}))
        return policy.is_action_permitted(action, resource)

    return get_permission


def _install_policy_conditions() -> None:
    _wrap(FakeBucket, "get_permission", _bucket_permission)


# --- SageMaker ----------------------------------------------------------------------------------

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


_transitions: weakref.WeakKeyDictionary[FakeEndpoint, _Transition] = weakref.WeakKeyDictionary()


def _begin(endpoint: FakeEndpoint, status: str, transition: _Transition) -> None:
    endpoint.endpoint_status = status
    endpoint.last_modified_time = utcnow()
    _transitions[endpoint] = transition


def _due() -> float:
    return clock() + ENDPOINT_TRANSITION_SECONDS


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
        if previous is None:
            continue
        for prop, keys in _VARIANT_PROPERTIES.items():
            if prop in excluded:
                continue
            for key in keys:
                if key in previous:
                    variant[key] = previous[key]
    return new


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
    now = clock()
    for endpoint in list(backend.endpoints.values()):
        work = _transitions.get(endpoint)
        if work is not None and now >= work.due:
            del _transitions[endpoint]
            _finish(backend, endpoint, work)


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
        if change is None:
            continue
        for prop, keys in _VARIANT_PROPERTIES.items():
            if change.get(prop) is not None:
                continue
            for key in keys:
                if key in previous[variant["VariantName"]]:
                    variant[key] = previous[variant["VariantName"]][key]
                else:
                    variant.pop(key, None)


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


def _install_sagemaker() -> None:
    _add(SageMakerModelBackend, "update_endpoint", _update_endpoint)
    _add(SageMakerResponse, "update_endpoint", _update_endpoint_action)
    _wrap(SageMakerModelBackend, "create_endpoint", _create_endpoint)
    _wrap(SageMakerModelBackend, "update_endpoint_weights_and_capacities", _update_weights)
    for name in ("describe_endpoint", "list_endpoints"):
        _wrap(SageMakerModelBackend, name, _settled)


# --- Glue ---------------------------------------------------------------------------------------

_CRAWLER_FIELDS = {
    "Role": "role",
    "DatabaseName": "database_name",
    "Description": "description",
    "Targets": "targets",
    "Schedule": "schedule",
    "Classifiers": "classifiers",
    "TablePrefix": "table_prefix",
    "SchemaChangePolicy": "schema_change_policy",
    "RecrawlPolicy": "recrawl_policy",
    "LineageConfiguration": "lineage_configuration",
    "Configuration": "configuration",
    "CrawlerSecurityConfiguration": "crawler_security_configuration",
    "LakeFormationConfiguration": "lake_formation_configuration",
}


def _update_crawler(self: GlueBackend, name: str, changes: dict[str, Any]) -> None:
    crawler = self.get_crawler(name)
    if crawler.status in ("RUNNING", "STOPPING"):
        raise CrawlerRunningException(
            "Cannot update Crawler while running. Please stop the crawl and try again."
        )
    for key, attribute in _CRAWLER_FIELDS.items():
        if key in changes:
            # moto keeps the schedule as its cron string; an empty string removes it.
            setattr(crawler, attribute, changes[key])
    crawler.version += 1
    crawler.last_updated = utcnow()


def _update_crawler_action(self: GlueResponse) -> ActionResult:
    params = self.parameters
    self.glue_backend.update_crawler(params["Name"], params)
    return EmptyResult()


def _crawler_as_dict(original: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    def as_dict(self: FakeCrawler) -> dict[str, Any]:
        data = original(self)
        lake_formation = getattr(self, "lake_formation_configuration", None)
        if lake_formation:
            data["LakeFormationConfiguration"] = lake_formation
        return data

    return as_dict


def _install_glue() -> None:
    _add(GlueBackend, "update_crawler", _update_crawler)
    _add(GlueResponse, "update_crawler", _update_crawler_action)
    _wrap(FakeCrawler, "as_dict", _crawler_as_dict)


# --- Athena -------------------------------------------------------------------------------------


class _AthenaInvalidRequest(JsonRESTError):
    code = 400

    def __init__(self, message: str, athena_error_code: str = "INVALID_INPUT"):
        super().__init__("InvalidRequestException", message)
        body = {
            "__type": "InvalidRequestException",
            "Message": message,
            "AthenaErrorCode": athena_error_code,
        }
        self.description = json.dumps(body)


# ConfigurationUpdates members copied as given into the workgroup's Configuration.
_WORKGROUP_SETTINGS = (
    "EnforceWorkGroupConfiguration",
    "PublishCloudWatchMetricsEnabled",
    "BytesScannedCutoffPerQuery",
    "RequesterPaysEnabled",
    "AdditionalConfiguration",
    "ExecutionRole",
    "CustomerContentEncryptionConfiguration",
    "EnableMinimumEncryptionConfiguration",
    "QueryResultsS3AccessGrantsConfiguration",
    "MonitoringConfiguration",
    "EngineConfiguration",
)
# Members that a Remove<Member> flag deletes, per nested update structure.
_REMOVABLE = {
    "": ("BytesScannedCutoffPerQuery", "CustomerContentEncryptionConfiguration"),
    "ResultConfiguration": (
        "OutputLocation",
        "EncryptionConfiguration",
        "ExpectedBucketOwner",
        "AclConfiguration",
    ),
    "ManagedQueryResultsConfiguration": ("EncryptionConfiguration",),
}


def _apply_removals(
    target: dict[str, Any], updates: dict[str, Any], names: tuple[str, ...]
) -> None:
    for name in names:
        if updates.get(f"Remove{name}"):
            target.pop(name, None)
        elif name in updates:
            target[name] = updates[name]


def _engine_version(selected: str) -> dict[str, str]:
    effective = "Athena engine version 3" if selected == "AUTO" else selected
    return {"SelectedEngineVersion": selected, "EffectiveEngineVersion": effective}


def _update_work_group(
    self: AthenaBackend,
    name: str,
    description: str | None,
    configuration_updates: dict[str, Any] | None,
    state: str | None,
) -> None:
    work_group = self.work_groups.get(name)
    if work_group is None:
        raise _AthenaInvalidRequest("WorkGroup is not found.")
    if description is not None:
        work_group.description = description
    if state is not None:
        work_group.state = state
    updates = configuration_updates or {}
    configuration = work_group.configuration
    for key in _WORKGROUP_SETTINGS:
        if key in updates:
            configuration[key] = updates[key]
    _apply_removals(configuration, updates, _REMOVABLE[""])
    for section in ("ResultConfiguration", "ManagedQueryResultsConfiguration"):
        section_updates = updates.get(f"{section}Updates")
        if section_updates is None:
            continue
        target = configuration.setdefault(section, {})
        if "Enabled" in section_updates:
            target["Enabled"] = section_updates["Enabled"]
        _apply_removals(target, section_updates, _REMOVABLE[section])
    if "EngineVersion" in updates:
        selected = updates["EngineVersion"].get("SelectedEngineVersion", "AUTO")
        configuration["EngineVersion"] = _engine_version(selected)


def _update_work_group_action(self: AthenaResponse) -> str:
    self.athena_backend.update_work_group(
        name=self._get_param("WorkGroup"),
        description=self._get_param("Description"),
        configuration_updates=self._get_param("ConfigurationUpdates"),
        state=self._get_param("State"),
    )
    return "{}"


def _install_athena() -> None:
    _add(AthenaBackend, "update_work_group", _update_work_group)
    _add(AthenaResponse, "update_work_group", _update_work_group_action)


# --- CloudWatch dashboard tags ------------------------------------------------------------------


def _dashboard_named(backend: CloudWatchBackend, arn: str) -> str | None:
    """The dashboard name in ``arn:<partition>:cloudwatch::<account>:dashboard/<name>``."""
    prefix = f"arn:{backend.partition}:cloudwatch::{backend.account_id}:dashboard/"
    return arn[len(prefix) :] if arn.startswith(prefix) else None


def _dashboard_tags(original: Callable[..., Any], operation: str) -> Callable[..., Any]:
    """TagResource/UntagResource/ListTagsForResource also take dashboard ARNs (moto: alarms
    and Contributor Insights rules only)."""

    def handle(self: CloudWatchBackend, arn: str, *args: Any) -> Any:
        name = _dashboard_named(self, arn)
        if name is None:
            return original(self, arn, *args)
        if name not in self.dashboards:
            raise CloudWatchNotFound()
        if operation == "tag":
            self.tagger.tag_resource(arn, self.tagger.convert_dict_to_tags_input(args[0]))
        elif operation == "untag":
            self.tagger.untag_resource_using_names(arn, args[0])
        return self.tagger.get_tag_dict_for_resource(arn)

    return handle


def _put_dashboard(original: Callable[..., Any]) -> Callable[..., Any]:
    """PutDashboard applies Tags when it creates the dashboard; on an update they are ignored."""

    def put(self: CloudWatchResponse) -> Any:
        backend = self.cloudwatch_backend
        name = self._get_param("DashboardName")
        created = name not in backend.dashboards
        result = original(self)
        tags = self._get_param("Tags", [])
        if created and tags and name in backend.dashboards:
            backend.tagger.tag_resource(backend.dashboards[name].arn, tags)
        return result

    return put


def _delete_dashboards(original: Callable[..., Any]) -> Callable[..., Any]:
    """DeleteDashboards also drops the tags of the dashboards it deletes."""

    def delete(self: CloudWatchBackend, dashboards: list[str]) -> Any:
        arns = [self.dashboards[name].arn for name in dashboards if name in self.dashboards]
        error = original(self, dashboards)
        if error is None:
            for arn in arns:
                self.tagger.delete_all_tags_for_resource(arn)
        return error

    return delete


def _install_cloudwatch() -> None:
    _wrap(CloudWatchBackend, "tag_resource", lambda f: _dashboard_tags(f, "tag"))
    _wrap(CloudWatchBackend, "untag_resource", lambda f: _dashboard_tags(f, "untag"))
    _wrap(CloudWatchBackend, "list_tags_for_resource", lambda f: _dashboard_tags(f, "list"))
    _wrap(CloudWatchResponse, "put_dashboard", _put_dashboard)
    _wrap(CloudWatchBackend, "delete_dashboards", _delete_dashboards)


# --- Serving: Lambda, Kinesis, API Gateway ------------------------------------------------------


def _function_configuration(original: Callable[..., dict[str, Any]]) -> Callable[..., Any]:
    """UpdateFunctionConfiguration also sets TracingConfig and KMSKeyArn ("" removes the key)."""

    def update(self: LambdaFunction, config_updates: dict[str, Any]) -> dict[str, Any]:
        if "TracingConfig" in config_updates:
            mode = (config_updates["TracingConfig"] or {}).get("Mode", "PassThrough")
            self.tracing_config = {"Mode": mode}
        if "KMSKeyArn" in config_updates:
            self.kms_key_arn = config_updates["KMSKeyArn"] or None
        return original(self, config_updates)

    return update


def _create_stream(original: Callable[..., Any]) -> Callable[..., Any]:
    """CreateStream applies its Tags to the new stream."""

    def create(self: KinesisResponse) -> Any:
        result = original(self)
        tags = self._get_param("Tags")
        if tags:
            self.kinesis_backend.add_tags_to_stream(None, self._get_param("StreamName"), tags)
        return result

    return create


def _tagged_api_resource(response: APIGatewayResponse) -> Any:
    """The REST API, usage plan or API key a tagging request names; None for anything else."""
    arn = unquote(response.path.split("/tags/", 1)[1])
    parts = arn.split("::", 1)[-1].strip("/").split("/")
    backend = response.backend
    lookups = {
        "restapis": backend.get_rest_api,
        "usageplans": backend.get_usage_plan,
        "apikeys": backend.get_api_key,
    }
    if len(parts) == 2 and parts[0] in lookups:
        return lookups[parts[0]](parts[1])
    return None


def _api_tags(original: Callable[..., Any], operation: str) -> Callable[..., Any]:
    """GetTags/TagResource/UntagResource on REST APIs, usage plans and API keys (moto: stages
    only)."""

    def handle(self: APIGatewayResponse) -> Any:
        resource = _tagged_api_resource(self)
        if resource is None:
            return original(self)
        tags = dict(resource.tags or {})
        if operation == "tag":
            tags.update(self._get_param("tags") or {})
        elif operation == "untag":
            for key in self.querystring.get("tagKeys") or []:
                tags.pop(key, None)
        resource.tags = tags
        return json.dumps({"tags": tags})

    return handle


def _put_integration(original: Callable[..., Any]) -> Callable[..., Any]:
    """PutIntegration keeps ``cacheKeyParameters``."""

    def put(self: APIGatewayResponse) -> Any:
        status, headers, _ = original(self)
        _, _, api_id, _, resource_id, _, method = self.path.split("/")[:7]
        integration = self.backend.get_integration(api_id, resource_id, method)
        integration.cache_key_parameters = list(self._get_param("cacheKeyParameters") or [])
        return status, headers, json.dumps(integration.to_json())

    return put


def _polled_by_the_stream_runtime(original: Callable[..., Any]) -> Callable[..., None]:
    """Records reach a function through its event source mapping, polled by the stream
    runtime (`mlpipe.local.stream`) with the mapping's batch size, window and retries, as the
    Lambda service does. moto would instead run the function (in Docker) on every PutRecord."""

    def send_kinesis_message(self: LambdaBackend, *args: Any, **kwargs: Any) -> None:
        return None

    del original
    return send_kinesis_message


def _install_serving() -> None:
    _wrap(LambdaBackend, "send_kinesis_message", _polled_by_the_stream_runtime)
    _wrap(LambdaFunction, "update_configuration", _function_configuration)
    _wrap(KinesisResponse, "create_stream", _create_stream)
    _wrap(APIGatewayResponse, "get_tags", lambda f: _api_tags(f, "get"))
    _wrap(APIGatewayResponse, "tag_resource", lambda f: _api_tags(f, "tag"))
    _wrap(APIGatewayResponse, "untag_resource", lambda f: _api_tags(f, "untag"))
    _wrap(APIGatewayResponse, "put_integration", _put_integration)


# --- Batch and its service-linked role ----------------------------------------------------------

# Names AWS gives service-linked roles where moto's derivation from the service name differs.
_SERVICE_LINKED_ROLE_NAMES = {"batch.amazonaws.com": "AWSServiceRoleForBatch"}
# What UpdateComputeEnvironment may change in computeResources; Fargate takes only these three.
_FARGATE_UPDATABLE = frozenset({"maxvCpus", "subnets", "securityGroupIds"})
_EC2_UPDATABLE = _FARGATE_UPDATABLE | {"minvCpus", "desiredvCpus"}


def _service_linked_role(original: Callable[..., Any]) -> Callable[..., Any]:
    """CreateServiceLinkedRole names the role as AWS does (``AWSServiceRoleForBatch``)."""

    def create(self: IAMBackend, service_name: str, description: str, suffix: str) -> Any:
        name = _SERVICE_LINKED_ROLE_NAMES.get(service_name)
        if name is None:
            return original(self, service_name, description, suffix)
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Action": ["sts:AssumeRole"],
                    "Effect": "Allow",
                    "Principal": {"Service": [service_name]},
                }
            ],
        }
        return self.create_role(
            f"{name}_{suffix}" if suffix else name,
            json.dumps(trust),
            f"/aws-service-role/{service_name}/",
            permissions_boundary=None,
            description=description,
            tags=[],
            max_session_duration="3600",
            linked_service=service_name,
        )

    return create


def _update_compute_environment(original: Callable[..., Any]) -> Callable[..., Any]:
    """UpdateComputeEnvironment also applies ``computeResources`` (moto ignores them):
    maxvCpus, subnets and security groups, plus minvCpus/desiredvCpus on EC2 resources."""

    def update(
        self: BatchBackend,
        compute_environment_name: str,
        state: str | None,
        compute_resources: dict[str, Any] | None,
        service_role: str | None,
    ) -> tuple[str, str]:
        env = self.get_compute_environment(compute_environment_name)
        changes = dict(compute_resources or {})
        if env is not None and changes:
            fargate = "FARGATE" in env.compute_resources.get("type", "")
            allowed = _FARGATE_UPDATABLE if fargate else _EC2_UPDATABLE
            refused = sorted(set(changes) - allowed)
            if refused and fargate:
                raise BatchClientException(
                    f"{', '.join(refused)} cannot be updated on a Fargate compute environment"
                )
            _check_compute_update(self, changes)
        result = original(self, compute_environment_name, state, None, service_role)
        if env is not None:
            for key in _EC2_UPDATABLE & set(changes):
                env.compute_resources[key] = changes[key]
        return result  # type: ignore[no-any-return]

    return update


def _check_compute_update(backend: BatchBackend, changes: dict[str, Any]) -> None:
    if "maxvCpus" in changes and int(changes["maxvCpus"]) < 0:
        raise BatchInvalidParameter("maxVCpus must be positive")
    for subnet_id in changes.get("subnets", []):
        try:
            backend.ec2_backend.get_subnet(subnet_id)
        except InvalidSubnetIdError:
            raise BatchInvalidParameter(f"subnet {subnet_id} does not exist") from None
    for group_id in changes.get("securityGroupIds", []):
        if backend.ec2_backend.get_security_group_from_id(group_id) is None:
            raise BatchInvalidParameter(f"security group {group_id} does not exist")


def _delete_compute_environment(original: Callable[..., Any]) -> Callable[..., Any]:
    """DeleteComputeEnvironment refuses an environment that is ENABLED or used by a queue."""

    def delete(self: BatchBackend, compute_environment_name: str) -> None:
        env = self.get_compute_environment(compute_environment_name)
        if env is not None:
            if env.state != "DISABLED":
                raise BatchClientException(
                    f"Cannot delete compute environment {env.name}: it must be DISABLED first"
                )
            users = [q.name for q in self._job_queues.values() if env in q.environments]
            if users:
                raise BatchClientException(
                    f"Cannot delete, found existing JobQueue relationship: {', '.join(users)}"
                )
        original(self, compute_environment_name)

    return delete


def _delete_job_queue(original: Callable[..., Any]) -> Callable[..., Any]:
    """DeleteJobQueue refuses a queue whose state is not DISABLED."""

    def delete(self: BatchBackend, queue_name: str) -> None:
        queue = self.get_job_queue(queue_name)
        if queue is not None and queue.state != "DISABLED":
            raise BatchClientException(
                f"Cannot delete job queue {queue.name}: it must be DISABLED first"
            )
        original(self, queue_name)

    return delete


def _latest_active(original: Callable[..., Any]) -> Callable[..., Any]:
    """SubmitJob takes a job definition ARN without a revision: AWS runs its latest ACTIVE
    revision, moto finds nothing."""

    def get_job_definition(self: BatchBackend, identifier: str) -> Any:
        found = original(self, identifier)
        prefix, _, name = identifier.partition(":job-definition/")
        if found is None and prefix.startswith("arn:") and name and ":" not in name:
            active = [
                d for d in self._job_definitions.values() if d.name == name and d.status == "ACTIVE"
            ]
            found = max(active, key=lambda d: d.revision, default=None)
        return found

    return get_job_definition


def _install_batch() -> None:
    _wrap(BatchBackend, "get_job_definition", _latest_active)
    _wrap(IAMBackend, "create_service_linked_role", _service_linked_role)
    _wrap(BatchBackend, "update_compute_environment", _update_compute_environment)
    _wrap(BatchBackend, "delete_compute_environment", _delete_compute_environment)
    _wrap(BatchBackend, "delete_job_queue", _delete_job_queue)
