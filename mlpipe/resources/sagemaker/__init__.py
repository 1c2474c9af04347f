"""SageMaker serving: one Model per model version, immutable endpoint configs, the endpoint.

What the endpoint serves is the deployment state, one JSON parameter in Parameter Store
(`DeploymentState`): which model version each variant serves and its traffic weight. The first
apply seeds it from the spec (`ssm:deployment`); afterwards the model operations commands write
it (`save_state`) and call `deploy`, which runs these same reconcilers, so an apply never undoes
a promotion or a traffic shift.

- Models (`sagemaker:models`) are immutable and named with their version; image and artifact
  come from the version's metadata parameter. Models no longer referenced are kept: a retained
  endpoint config may still use them for a rollback. Destroy deletes every Model mlpipe tagged.
- Endpoint configs are named by a hash of what needs a new config (models, instance types,
  data capture, key). Weights and instance counts are not part of it: they are properties of
  the live endpoint, changed by UpdateEndpointWeightsAndCapacities and by the autoscaler, and
  kept across config changes (RetainAllVariantProperties). A weight-only difference is one
  UpdateEndpointWeightsAndCapacities call. After a config change the previous config is kept
  for rollback, and older ones beyond `endpoint.keep_configs` are deleted.
- The endpoint (`sagemaker:endpoint`) is only updated once it is stable (never while Creating,
  Updating or RollingBack); every wait reports progress and is bounded by
  `endpoint.wait_timeout_seconds`. An update SageMaker could not deploy leaves the endpoint
  InService on its previous config with a FailureReason: that is reported as a failure.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mlpipe.core.context import Context
from mlpipe.core.diff import (
    Diff,
    Unknown,
    contains_unknown,
    diff,
    sync_tags,
    tags_from_list,
    tags_to_list,
)
from mlpipe.core.errors import MlpipeError, error_code, is_not_found
from mlpipe.core.executor import Report, Status, execute
from mlpipe.core.plan import Action, Plan, plan_apply
from mlpipe.core.resource import Observed, Outputs, Refs, Resource
from mlpipe.resources import artifacts, autoscaling, iam, kms, network, s3, ssm
from mlpipe.resources.logs import LogGroup
from mlpipe.spec import EndpointSpec, VariantSpec

MODELS = "sagemaker:models"
ENDPOINT = "sagemaker:endpoint"
DEPLOYMENT = f"{ssm.Parameter.kind}:deployment"
MODEL_BUCKET = f"{s3.Bucket.kind}:models"
ROLE = iam.role_key("sagemaker")
ENDPOINT_LOGS = "logs:endpoint"

IN_PROGRESS = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"})
POLL_SECONDS = 15.0
# Polls start quick and back off to POLL_SECONDS: short operations end without a long wait.
FIRST_POLL_SECONDS = 0.25
# Time source and sleep of the endpoint waits; tests replace them to drive time.
clock: Callable[[], float] = time.monotonic
sleep: Callable[[float], None] = time.sleep


# --- The deployment state -----------------------------------------------------------------------


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Variant(_Frozen):
    name: str
    version: str
    weight: int = Field(ge=0, le=100, description="percent of the traffic")


class DeploymentState(_Frozen):
    """Which model version each endpoint variant serves, and its traffic weight."""

    variants: tuple[Variant, ...]
    champion: str
    challenger: str | None = None
    # Who wrote this state and why (the operations commands record it; history reads it).
    operation: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> DeploymentState:
        try:  # the spec's rules: variant names, versions, 1 to 10 variants, weights add to 100
            EndpointSpec(variants=[VariantSpec(**v.model_dump()) for v in self.variants])
        except ValidationError as exc:
            raise ValueError(
                "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
            ) from None
        names = [v.name for v in self.variants]
        for role, name in (("champion", self.champion), ("challenger", self.challenger)):
            if name is not None and name not in names:
                raise ValueError(f"{role} {name} is not one of the variants ({', '.join(names)})")
        if self.challenger == self.champion:
            raise ValueError("champion and challenger must be different variants")
        return self

    @classmethod
    def from_spec(cls, ctx: Context) -> DeploymentState:
        """The state the first apply writes (`ssm.deployment_state`)."""
        return cls.model_validate(ssm.deployment_state(ctx))

    def to_json(self) -> str:
        exclude = {"operation"} if self.operation is None else set()
        return json.dumps(self.model_dump(mode="json", exclude=exclude), sort_keys=True)

    @property
    def versions(self) -> list[str]:
        return sorted({v.version for v in self.variants})

    @property
    def weights(self) -> dict[str, float]:
        """SageMaker's relative weights: variant → fraction of the traffic."""
        return {v.name: round(v.weight / 100, 4) for v in self.variants}


def _parse_state(name: str, value: str) -> DeploymentState:
    try:
        return DeploymentState.model_validate_json(value)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise MlpipeError(f"parameter {name} is not a valid deployment state: {problems}") from exc


def load_state(ctx: Context) -> DeploymentState | None:
    """The deployment state in Parameter Store; None before the first apply has written it."""
    name = ctx.names.deployment_param
    try:
        value = ctx.aws.client("ssm").get_parameter(Name=name)["Parameter"]["Value"]
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise
    return _parse_state(name, value)


def save_state(ctx: Context, state: DeploymentState) -> None:
    """Write the deployment state; `deploy` (or the next apply) makes the endpoint follow it."""
    ctx.aws.client("ssm").put_parameter(
        Name=ctx.names.deployment_param, Value=state.to_json(), Type="String", Overwrite=True
    )


class Serving:
    """Where the desired deployment comes from: a given state, else the parameter, else (before
    the first apply has written the parameter) the spec."""

    def __init__(self, ctx: Context, state: DeploymentState | None = None) -> None:
        self.ctx = ctx
        self.given = state

    def state(self) -> DeploymentState:
        return self.given or load_state(self.ctx) or DeploymentState.from_spec(self.ctx)

    def metadata(self, versions: Sequence[str]) -> dict[str, dict[str, Any]]:
        """version → its metadata parameter (JSON: version, s3Path, image, ...), for the versions
        that are registered or that this apply registers (the spec declares their artifact: the
        s3Path is then the artifact's output). A version that is neither is left out."""
        names = {self.ctx.names.metadata_param(v): v for v in versions}
        found: dict[str, dict[str, Any]] = {}
        if names:
            params = self.ctx.aws.client("ssm").get_parameters(Names=list(names))["Parameters"]
            for param in params:
                try:
                    found[names[param["Name"]]] = json.loads(param["Value"])
                except ValueError as exc:
                    raise MlpipeError(f"parameter {param['Name']} is not JSON: {exc}") from exc
        for version in names.values():
            if ssm.is_registered(found.get(version)):
                continue
            if version in artifacts.declared(self.ctx):
                found[version] = ssm.version_metadata(self.ctx, version)
            else:
                found.pop(version, None)
        return found


def unavailable(version: str) -> str:
    return (
        f"{version} has no artifact (set models.versions.{version}.artifact or run "
        f"mlpipe models register {version} PATH)"
    )


class _Served(Resource):
    """A resource whose desired state follows the deployment state, loaded again at each read."""

    kind = "sagemaker"

    def __init__(
        self, ctx: Context, name: str, physical: str, serving: Serving, depends_on: tuple[str, ...]
    ) -> None:
        super().__init__(ctx, name, physical, depends_on)
        self.serving = serving
        self._state: DeploymentState | None = None

    def deployment(self, fresh: bool = False) -> DeploymentState:
        if fresh or self._state is None:
            self._state = self.serving.state()
        return self._state


def _missing(exc: Exception) -> bool:
    """SageMaker's not-found: ValidationException "Could not find endpoint/model/..."."""
    return is_not_found(exc) or (
        error_code(exc) == "ValidationException" and "Could not find" in str(exc)
    )


def _own_retry(exc: Exception) -> bool:
    """botocore retried an endpoint update whose answer was lost, and met the update itself
    in progress (the endpoint is locked to one writer: no one else's)."""
    return error_code(exc) == "ValidationException" and "Cannot update in-progress" in str(exc)


# --- Models -------------------------------------------------------------------------------------

# Properties a Model is created with and never changes (a version's artifact is immutable).
MODEL_FIXED = ("Image", "ModelDataUrl", "ExecutionRoleArn", "VpcConfig")


def network_keys(ctx: Context) -> tuple[str, ...]:
    """The isolated subnets and the security group the models run in."""
    return (network.SG_SAGEMAKER, *network.subnet_keys(ctx.spec))


def _vpc_config(config: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The models' VpcConfig, lists sorted once their ids are known."""
    if not config:
        return None
    return {k: sorted(v) if all(isinstance(i, str) for i in v) else v for k, v in config.items()}


class Models(_Served):
    """A Model for every version the deployment state serves."""

    def __init__(self, ctx: Context, serving: Serving) -> None:
        metadata = tuple(f"{ssm.Parameter.kind}:metadata-{v}" for v in ctx.spec.models.versions)
        uploads = tuple(artifacts.artifact_key(v) for v in artifacts.declared(ctx))
        super().__init__(
            ctx,
            "models",
            f"{ctx.names.model_prefix}*",
            serving,
            depends_on=(ROLE, DEPLOYMENT, *metadata, *uploads, *network_keys(ctx)),
        )
        self._metadata: dict[str, dict[str, Any]] = {}
        self._unavailable: list[str] = []

    def blocked(self, observed: Observed | None) -> str | None:
        return "; ".join(unavailable(v) for v in self._unavailable) or None

    def read(self) -> Observed | None:
        state = self.deployment(fresh=True)
        self._metadata = self.serving.metadata(state.versions)
        self._unavailable = [v for v in state.versions if v not in self._metadata]
        sm = self.client("sagemaker")
        models: dict[str, Any] = {}
        arns: dict[str, str] = {}
        for version in state.versions:
            name = self.ctx.names.model(version)
            try:
                model = sm.describe_model(ModelName=name)
            except ClientError as exc:
                if _missing(exc):
                    continue
                raise
            container = model.get("PrimaryContainer") or {}
            arns[name] = model["ModelArn"]
            models[name] = {
                "Image": container.get("Image"),
                "ModelDataUrl": container.get("ModelDataUrl"),
                "ExecutionRoleArn": model.get("ExecutionRoleArn"),
                "VpcConfig": _vpc_config(model.get("VpcConfig")),
                "Tags": tags_from_list(sm.list_tags(ResourceArn=model["ModelArn"])["Tags"]),
            }
        if not models:
            return None
        owned = all(self.ctx.owns(m["Tags"]) for m in models.values())
        return Observed({"Models": models}, {"arns": arns}, owned)

    def desired(self, refs: Refs) -> dict[str, Any]:
        if not self._metadata:
            self._metadata = self.serving.metadata(self.deployment().versions)
        models = {}
        for version, meta in sorted(self._metadata.items()):
            registered = ssm.is_registered(meta)
            models[self.ctx.names.model(version)] = {
                "Image": meta["image"],
                # Registered by this apply: the artifact's location once it is uploaded.
                "ModelDataUrl": meta["s3Path"]
                if registered
                else refs(artifacts.artifact_key(version), "s3Path"),
                "ExecutionRoleArn": refs(ROLE, "arn"),
                "VpcConfig": _vpc_config(
                    {
                        "SecurityGroupIds": [refs(network.SG_SAGEMAKER, "id")],
                        "Subnets": [refs(k, "id") for k in network.subnet_keys(self.ctx.spec)],
                    }
                ),
                "Tags": self.tags,
            }
        return {"Models": models}

    def diff(self, current: Mapping[str, Any], desired: Mapping[str, Any]) -> Diff:
        live = current.get("Models", {})
        return diff(
            current,
            desired,
            ignore=[f"Models.{name}.{prop}" for name in live for prop in MODEL_FIXED],
            exact=[f"Models.{name}.Tags" for name in desired["Models"]],
        )

    def create(self, desired: dict[str, Any]) -> Outputs:
        return self.update(Observed({"Models": {}}, {"arns": {}}), desired, Diff())

    def update(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> Outputs:
        sm, live = self.client("sagemaker"), observed.state["Models"]
        arns = dict(observed.outputs["arns"])
        for name, model in desired["Models"].items():
            if name not in live:
                arns[name] = self._create(name, model)
            elif live[name]["Tags"] != model["Tags"]:
                arn = arns[name]
                sync_tags(
                    live[name]["Tags"],
                    model["Tags"],
                    lambda t, arn=arn: sm.add_tags(ResourceArn=arn, Tags=tags_to_list(t)),
                    lambda keys, arn=arn: sm.delete_tags(ResourceArn=arn, TagKeys=keys),
                )
        return {"arns": arns}

    def _create(self, name: str, model: Mapping[str, Any]) -> str:
        sm = self.client("sagemaker")
        created = self.ctx.eventually(
            lambda: sm.create_model(
                ModelName=name,
                PrimaryContainer={"Image": model["Image"], "ModelDataUrl": model["ModelDataUrl"]},
                ExecutionRoleArn=model["ExecutionRoleArn"],
                VpcConfig=model["VpcConfig"],
                EnableNetworkIsolation=True,
                Tags=tags_to_list(model["Tags"]),
            ),
            "sagemaker-role-not-assumable",
            "sagemaker-model-data-not-accessible",
        )
        return str(created["ModelArn"])

    def _owned(self) -> list[str]:
        """Every model this pipeline made (found by its tags), served or not."""
        sm, prefix, found = self.client("sagemaker"), self.ctx.names.model_prefix, []
        for page in sm.get_paginator("list_models").paginate(NameContains=prefix):
            for model in page["Models"]:
                if not model["ModelName"].startswith(prefix):
                    continue
                tags = tags_from_list(sm.list_tags(ResourceArn=model["ModelArn"])["Tags"])
                if self.ctx.owns(tags):
                    found.append(model["ModelName"])
        return found

    def remnants(self) -> Observed | None:
        owned = self._owned()
        return Observed({"Models": sorted(owned)}, {"arns": {}}) if owned else None

    def delete(self, observed: Observed) -> None:
        sm = self.client("sagemaker")
        for name in self._owned():
            try:
                sm.delete_model(ModelName=name)
            except ClientError as exc:
                if not _missing(exc):
                    raise


# --- The endpoint -------------------------------------------------------------------------------

# Families with local NVMe storage: SageMaker encrypts it with a hardware key and
# CreateEndpointConfig refuses a KmsKeyId for them (besides every "d" family: m5d, g4dn, p4d).
NVME_FAMILIES = frozenset({"g5", "g6", "g6e", "p5", "p5e", "trn1"})


def local_storage(instance_type: str) -> bool:
    parts = instance_type.split(".")
    family = parts[1] if len(parts) == 3 else ""
    match = re.fullmatch(r"([a-z]+\d+)([a-z-]*)", family)
    return bool(match) and ("d" in match.group(2) or family in NVME_FAMILIES)


def _capture(config: Mapping[str, Any] | None) -> dict[str, Any]:
    if not config or not config.get("EnableCapture"):
        return {"EnableCapture": False}
    return {
        "EnableCapture": True,
        "InitialSamplingPercentage": config.get("InitialSamplingPercentage"),
        "DestinationS3Uri": config.get("DestinationS3Uri"),
        "KmsKeyId": config.get("KmsKeyId"),
        "CaptureOptions": sorted(
            ({"CaptureMode": o["CaptureMode"]} for o in config.get("CaptureOptions", [])),
            key=lambda o: o["CaptureMode"],
        ),
    }


def _config(config: Mapping[str, Any]) -> dict[str, Any]:
    """An endpoint config in the shape that names it: everything but weights and counts."""
    return {
        "ProductionVariants": sorted(
            (
                {
                    "VariantName": v["VariantName"],
                    "ModelName": v["ModelName"],
                    "InstanceType": v.get("InstanceType"),
                }
                for v in config["ProductionVariants"]
            ),
            key=lambda v: v["VariantName"],
        ),
        "DataCaptureConfig": _capture(config.get("DataCaptureConfig")),
        "KmsKeyId": config.get("KmsKeyId"),
    }


def relative_weights(endpoint: Mapping[str, Any]) -> dict[str, float]:
    """A described endpoint's variant weights (the desired ones AWS is moving to) as fractions
    of the traffic: SageMaker weights are relative, 0.8/0.2 and 4/1 are the same split."""
    raw = {
        v["VariantName"]: float(v.get("DesiredWeight", v.get("CurrentWeight", 0.0)))
        for v in endpoint.get("ProductionVariants") or []
    }
    total = sum(raw.values())
    return {name: round(w / total, 4) if total else 0.0 for name, w in sorted(raw.items())}


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Endpoint(_Served):
    """The endpoint, reconciled to the deployment state: config, weights, tags."""

    replace_on = ("Status",)  # a Failed endpoint cannot be updated, only created again

    def __init__(self, ctx: Context, serving: Serving, timeout: float | None = None) -> None:
        super().__init__(
            ctx,
            "endpoint",
            ctx.names.endpoint,
            serving,
            depends_on=(kms.KEY, MODEL_BUCKET, DEPLOYMENT, MODELS, ENDPOINT_LOGS),
        )
        self.timeout = float(timeout or ctx.spec.endpoint.wait_timeout_seconds)
        self._released: list[str] = []

    @property
    def sm(self) -> Any:
        return self.client("sagemaker")

    # Reading --------------------------------------------------------------------------------
    def _describe(self) -> dict[str, Any] | None:
        try:
            return dict(self.sm.describe_endpoint(EndpointName=self.physical))
        except ClientError as exc:
            if _missing(exc):
                return None
            raise

    def _live_config(self, name: str) -> dict[str, Any] | None:
        try:
            return _config(self.sm.describe_endpoint_config(EndpointConfigName=name))
        except ClientError as exc:
            if _missing(exc):
                return None
            raise

    def read(self) -> Observed | None:
        self.deployment(fresh=True)
        live = self._describe()
        if live is None or live["EndpointStatus"] == "Deleting":
            return None
        tags = tags_from_list(self.sm.list_tags(ResourceArn=live["EndpointArn"])["Tags"])
        failed = live["EndpointStatus"] == "Failed"
        state = {
            "EndpointConfigName": live["EndpointConfigName"],
            "EndpointConfig": self._live_config(live["EndpointConfigName"]),
            "Weights": relative_weights(live),
            # Anything but Failed serves (or will): only Failed needs the endpoint created again.
            "Status": f"Failed: {live.get('FailureReason', '')}" if failed else "InService",
            "Tags": tags,
        }
        return Observed(state, self._outputs(live), self.ctx.owns(tags))

    def _outputs(self, live: Mapping[str, Any]) -> Outputs:
        return {
            "name": self.physical,
            "arn": live["EndpointArn"],
            "config": live["EndpointConfigName"],
        }

    # Desired --------------------------------------------------------------------------------
    def _placement(self, variant: str) -> tuple[str, int]:
        """Instance type and initial count of a variant: its spec entry, else the defaults."""
        spec = self.ctx.spec.endpoint
        declared = next((v for v in spec.variants if v.name == variant), None)
        if declared is None:
            return spec.instance_type, 1
        return declared.instance_type or spec.instance_type, declared.instance_count

    def desired(self, refs: Refs) -> dict[str, Any]:
        state, names = self.deployment(), self.ctx.names
        key_arn = refs(kms.KEY, "arn")
        variants = [
            {
                "VariantName": v.name,
                "ModelName": names.model(v.version),
                "InstanceType": self._placement(v.name)[0],
            }
            for v in state.variants
        ]
        capture = self.ctx.spec.endpoint.data_capture
        config = _config(
            {
                "ProductionVariants": variants,
                "DataCaptureConfig": {
                    "EnableCapture": capture.enabled,
                    "InitialSamplingPercentage": capture.sampling_percentage,
                    "DestinationS3Uri": f"s3://{names.model_bucket}/data-capture",
                    "KmsKeyId": key_arn,
                    "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
                },
                "KmsKeyId": (
                    None if any(local_storage(v["InstanceType"]) for v in variants) else key_arn
                ),
            }
        )
        name = (
            Unknown(f"{self.key}.config")
            if contains_unknown(config)
            else names.endpoint_config(json.dumps(config, sort_keys=True))
        )
        return {
            "EndpointConfigName": name,
            "EndpointConfig": config,
            "Weights": state.weights,
            "Status": "InService",
            "Tags": self.tags,
        }

    # Waiting --------------------------------------------------------------------------------
    def _poll(self, phase: str, done: Callable[[dict[str, Any] | None], bool]) -> Any:
        """Describe the endpoint until `done`, reporting progress, within the time budget."""
        started, interval = clock(), FIRST_POLL_SECONDS
        while True:
            live = self._describe()
            if done(live):
                return live
            status = live["EndpointStatus"] if live else "gone"
            elapsed = clock() - started
            if elapsed >= self.timeout:
                raise MlpipeError(
                    f"endpoint {self.physical} is still {status} after {_duration(elapsed)} "
                    f"({phase}); endpoint.wait_timeout_seconds allows {_duration(self.timeout)}. "
                    "SageMaker carries on: run the command again later to continue from there, "
                    "or raise the budget"
                )
            self.ctx.progress(
                self.key,
                f"{phase}: {status}, {_duration(elapsed)} elapsed of "
                f"{_duration(self.timeout)} budget",
            )
            sleep(min(interval, self.timeout - elapsed))
            interval = min(interval * 2, POLL_SECONDS)

    def _stable(self, phase: str) -> dict[str, Any]:
        """The endpoint once no operation is in progress on it."""
        live = self._poll(phase, lambda d: d is None or d["EndpointStatus"] not in IN_PROGRESS)
        if live is None:
            raise MlpipeError(f"endpoint {self.physical} disappeared while {phase}")
        return dict(live)

    # Changing -------------------------------------------------------------------------------
    def _ensure_config(self, desired: Mapping[str, Any]) -> None:
        name, config = desired["EndpointConfigName"], desired["EndpointConfig"]
        if self._live_config(name) is not None:
            return
        variants = []
        for variant in config["ProductionVariants"]:
            count = self._placement(variant["VariantName"])[1]
            weight = desired["Weights"][variant["VariantName"]]
            variants.append(
                {**variant, "InitialInstanceCount": count, "InitialVariantWeight": weight}
            )
        params: dict[str, Any] = {
            "EndpointConfigName": name,
            "ProductionVariants": variants,
            "Tags": tags_to_list(desired["Tags"]),
        }
        if config["DataCaptureConfig"]["EnableCapture"]:
            params["DataCaptureConfig"] = config["DataCaptureConfig"]
        if config["KmsKeyId"]:
            params["KmsKeyId"] = config["KmsKeyId"]
        self.sm.create_endpoint_config(**params)

    def _restore(self, variants: Iterable[str]) -> None:
        names = list(variants)
        if names:
            wanted = autoscaling.settings(self.ctx.spec.autoscaling)
            tags = self.ctx.tags_for(autoscaling.SCALING)
            autoscaling.register(self.ctx, self.physical, names, wanted, tags)

    def _switch_config(self, live: dict[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
        previous, target = live["EndpointConfigName"], desired["EndpointConfigName"]
        before = {
            v["VariantName"]: v["InstanceType"]
            for v in (self._live_config(previous) or {}).get("ProductionVariants", [])
        } or {name: None for name in relative_weights(live)}
        after = {
            v["VariantName"]: v["InstanceType"]
            for v in desired["EndpointConfig"]["ProductionVariants"]
        }
        # AWS refuses to remove a variant or change its instance type while it is a scalable
        # target: deregister those first, register the ones still served afterwards.
        displaced = [name for name, kind in before.items() if after.get(name) != kind]
        released = autoscaling.release(self.ctx, self.physical, displaced)
        try:
            self.ctx.eventually(
                lambda: self.sm.update_endpoint(
                    EndpointName=self.physical,
                    EndpointConfigName=target,
                    RetainAllVariantProperties=True,
                    ExcludeRetainedVariantProperties=[{"VariantPropertyType": "DataCaptureConfig"}],
                ),
                "sagemaker-endpoint-config-not-visible",
            )
        except ClientError as exc:
            if not _own_retry(exc):  # else: checked below, once the update has finished
                self._restore(released)
                raise
        live = self._stable(f"updating to {target}")
        self._restore(v for v in released if v in relative_weights(live))
        if live["EndpointConfigName"] != target:
            reason = live.get("FailureReason") or "SageMaker gave no reason"
            raise MlpipeError(
                f"endpoint {self.physical}: the update to {target} failed: {reason} "
                f"(the endpoint still serves {live['EndpointConfigName']})"
            )
        self._prune(keep={target, previous})
        return live

    def _shift_weights(self, live: dict[str, Any], weights: Mapping[str, float]) -> dict[str, Any]:
        current = relative_weights(live)
        if all(current.get(name) == weight for name, weight in weights.items()):
            return live
        try:
            self.sm.update_endpoint_weights_and_capacities(
                EndpointName=self.physical,
                DesiredWeightsAndCapacities=[
                    {"VariantName": name, "DesiredWeight": weight}
                    for name, weight in sorted(weights.items())
                ],
            )
        except ClientError as exc:
            if not _own_retry(exc):  # else the operation verifies the weights it reached
                raise
        split = ", ".join(f"{name} {weight:.0%}" for name, weight in sorted(weights.items()))
        return self._stable(f"shifting traffic to {split}")

    def _owned_configs(self) -> list[str]:
        """Names of the configs mlpipe created for this pipeline, newest first."""
        prefix = self.ctx.names.endpoint_config_prefix
        found = []
        pages = self.sm.get_paginator("list_endpoint_configs").paginate(NameContains=prefix)
        for page in pages:
            for config in page["EndpointConfigs"]:
                if not config["EndpointConfigName"].startswith(prefix):
                    continue
                tags = self.sm.list_tags(ResourceArn=config["EndpointConfigArn"])["Tags"]
                if self.ctx.owns(tags_from_list(tags)):
                    found.append((config["CreationTime"], config["EndpointConfigName"]))
        return [name for _, name in sorted(found, reverse=True)]

    def _delete_config(self, name: str) -> None:
        try:
            self.sm.delete_endpoint_config(EndpointConfigName=name)
        except ClientError as exc:
            if not _missing(exc):
                raise

    def _prune(self, keep: set[str]) -> None:
        """Keep the live and the previous config, and the newest others up to keep_configs."""
        others = [name for name in self._owned_configs() if name not in keep]
        spare = max(0, self.ctx.spec.endpoint.keep_configs - len(keep))
        for name in others[spare:]:
            self._delete_config(name)

    def create(self, desired: dict[str, Any]) -> Outputs:
        if self._describe() is not None:  # still being deleted (read treats it as absent)
            self._poll("waiting for the previous endpoint to be deleted", lambda d: d is None)
        self._ensure_config(desired)
        self.ctx.eventually(
            lambda: self.sm.create_endpoint(
                EndpointName=self.physical,
                EndpointConfigName=desired["EndpointConfigName"],
                Tags=tags_to_list(desired["Tags"]),
            ),
            "sagemaker-endpoint-config-not-visible",
        )
        live = self._stable("creating the endpoint")
        if live["EndpointStatus"] == "Failed":
            raise MlpipeError(
                f"endpoint {self.physical} failed to create: "
                f"{live.get('FailureReason') or 'SageMaker gave no reason'}"
            )
        live = self._shift_weights(live, desired["Weights"])
        self._restore(v for v in self._released if v in relative_weights(live))
        self._released = []
        return self._outputs(live)

    def update(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> Outputs:
        live = self._stable("waiting for the endpoint's current operation to finish")
        if live["EndpointStatus"] == "Failed":
            raise MlpipeError(
                f"endpoint {self.physical} is Failed ({live.get('FailureReason', '')}): "
                "the next apply creates it again"
            )
        target = desired["EndpointConfigName"]
        if live["EndpointConfigName"] != target or changes.touches("EndpointConfig"):
            self._ensure_config(desired)
        if live["EndpointConfigName"] != target:
            live = self._switch_config(live, desired)
        live = self._shift_weights(live, desired["Weights"])
        if changes.touches("Tags"):
            arn = live["EndpointArn"]
            sync_tags(
                observed.state["Tags"],
                desired["Tags"],
                lambda t: self.sm.add_tags(ResourceArn=arn, Tags=tags_to_list(t)),
                lambda keys: self.sm.delete_tags(ResourceArn=arn, TagKeys=keys),
            )
        return self._outputs(live)

    def delete(self, observed: Observed) -> None:
        # Deleting the endpoint deregisters its variants; remembered for a replacement's create.
        self._released = autoscaling.release(self.ctx, self.physical)
        try:
            self.sm.delete_endpoint(EndpointName=self.physical)
        except ClientError as exc:
            if not _missing(exc):
                raise
        self._poll("deleting the endpoint", lambda d: d is None)
        for name in self._owned_configs():
            self._delete_config(name)

    def remnants(self) -> Observed | None:
        """Configs left when a destroy was killed after deleting the endpoint."""
        configs = self._owned_configs()
        return Observed({"EndpointConfigs": configs}, {"name": self.physical}) if configs else None

    def warnings(self) -> list[str]:
        notes = [
            f"variant {v.name} starts with {v.instance_count} instance (AWS FSBP SageMaker.4 "
            "expects more than 1, across availability zones)"
            for v in self.ctx.spec.endpoint.variants
            if v.instance_count < 2
        ]
        types = {self._placement(v.name)[0] for v in self.ctx.spec.endpoint.variants}
        notes += [
            f"{t} has local NVMe storage: SageMaker encrypts it with a hardware key, not the "
            "pipeline's KMS key (the endpoint config carries no KmsKeyId)"
            for t in sorted(types)
            if local_storage(t)
        ]
        return notes


# --- Assembly and the operations entry point ---------------------------------------------------


def serving_resources(
    ctx: Context, state: DeploymentState | None = None, timeout: float | None = None
) -> list[Resource]:
    """Models, endpoint and autoscaling, following `state` (default: Parameter Store)."""
    serving = Serving(ctx, state)
    return [
        Models(ctx, serving),
        Endpoint(ctx, serving, timeout),
        autoscaling.VariantScaling(
            ctx, lambda: [v.name for v in serving.state().variants], ENDPOINT
        ),
    ]


def resources(ctx: Context) -> list[Resource]:
    # The group SageMaker writes the endpoint's container logs to, created by mlpipe first so
    # it has the pipeline's key, retention and tags, and destroy removes it.
    group = LogGroup(
        ctx,
        "endpoint",
        f"/aws/sagemaker/Endpoints/{ctx.names.endpoint}",
        ctx.spec.monitoring.log_retention_days,
    )
    return [group, *serving_resources(ctx)]


@dataclass(frozen=True)
class DeployResult:
    plan: Plan
    report: Report
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.report.ok

    @property
    def endpoint(self) -> Outputs:
        """The endpoint's outputs after the run: name, arn, live config."""
        return self.report.outputs.get(ENDPOINT, {})


def deploy(ctx: Context, state: DeploymentState, *, timeout: float | None = None) -> DeployResult:
    """Make the endpoint serve `state` (already saved with `save_state`): the apply's own
    reconcilers, run for the serving resources only. The key, bucket and role they use must
    exist; they are read, never changed here."""
    serving = serving_resources(ctx, state, timeout)
    keys = {r.key for r in serving}
    support = [
        r
        for r in [
            *kms.resources(ctx),
            *s3.resources(ctx),
            *iam.resources(ctx),
            *network.resources(ctx),
        ]
        if r.key in (kms.KEY, MODEL_BUCKET, ROLE, network.VPC, *network_keys(ctx))
    ]
    plan = plan_apply([*support, *serving])
    missing = [s.key for s in plan.steps if s.key not in keys and s.action is Action.CREATE]
    if missing:
        raise MlpipeError(f"{', '.join(missing)} does not exist: run `mlpipe apply` first")
    plan = Plan(
        [s if s.key in keys else replace(s, action=Action.NOOP, diff=Diff()) for s in plan.steps]
    )
    report = execute(plan)
    errors = {
        key: outcome.error or "skipped: a dependency failed"
        for key, outcome in report.outcomes.items()
        if outcome.status in (Status.FAILED, Status.SKIPPED)
    }
    return DeployResult(plan, report, errors)


def settled_endpoint(ctx: Context, timeout: float | None = None) -> dict[str, Any] | None:
    """The endpoint once no operation is in progress on it (None when there is none)."""
    endpoint = Endpoint(ctx, Serving(ctx), timeout)
    found = endpoint._poll(
        "waiting for the endpoint's current operation to finish",
        lambda d: d is None or d["EndpointStatus"] not in IN_PROGRESS,
    )
    return dict(found) if found else None
