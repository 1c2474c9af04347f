"""The endpoint (`sagemaker:endpoint`), reconciled to the deployment state.

Endpoint configs are named by a hash of what needs a new config (models, instance types, data
capture, key). Weights and instance counts are not part of it: they are properties of the live
endpoint, changed by UpdateEndpointWeightsAndCapacities and by the autoscaler, and kept across
config changes (RetainAllVariantProperties). A weight-only difference is one
UpdateEndpointWeightsAndCapacities call. After a config change the previous config is kept for
rollback, and older ones beyond `endpoint.keep_configs` are deleted.

The endpoint is only updated once it is stable (never while Creating, Updating or
RollingBack); every wait reports progress and is bounded by `endpoint.wait_timeout_seconds`. An
update SageMaker could not deploy leaves the endpoint InService on its previous config with a
FailureReason: that is reported as a failure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from botocore.exceptions import ClientError

from mlpipe.core.context import Context
from mlpipe.core.diff import Diff, Unknown, contains_unknown, tags_to_list
from mlpipe.core.errors import MlpipeError, error_code
from mlpipe.core.find import forget
from mlpipe.core.resource import Observed, Outputs, Refs
from mlpipe.core.tagging import read_tags
from mlpipe.core.wait import Backoff, Pending, TimedOut, poll
from mlpipe.resources import autoscaling, kms
from mlpipe.resources.sagemaker.serving import (
    DEPLOYMENT,
    ENDPOINT_LOGS,
    MODEL_BUCKET,
    MODELS,
    Served,
    Serving,
)

IN_PROGRESS = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"})
# Polls start quick and back off to 15 s: short operations end without a long wait.
BACKOFF = Backoff(first=0.25, cap=15.0)


def _own_retry(exc: Exception) -> bool:
    """botocore retried an endpoint update whose answer was lost, and met the update itself
    in progress (the endpoint is locked to one writer: no one else's)."""
    return error_code(exc) == "ValidationException" and "Cannot update in-progress" in str(exc)


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


class Endpoint(Served):
    """The endpoint, reconciled to the deployment state: config, weights, tags."""

    replace_on = ("Status",)  # a Failed endpoint cannot be updated, only created again
    tagging = "sagemaker"

    def __init__(self, ctx: Context, serving: Serving, timeout: float | None = None) -> None:
        super().__init__(
            ctx,
            "endpoint",
            ctx.names.endpoint,
            serving,
            depends_on=(kms.KEY, MODEL_BUCKET, DEPLOYMENT, MODELS, ENDPOINT_LOGS),
        )
        self.timeout = float(timeout or ctx.spec.endpoint.wait_timeout_seconds)

    @property
    def sm(self) -> Any:
        return self.client("sagemaker")

    # Reading --------------------------------------------------------------------------------
    def _describe(self) -> dict[str, Any] | None:
        return self.find("sagemaker", "describe_endpoint", EndpointName=self.physical)

    def _live_config(self, name: str) -> dict[str, Any] | None:
        found = self.find("sagemaker", "describe_endpoint_config", EndpointConfigName=name)
        return None if found is None else _config(found)

    def read(self) -> Observed | None:
        live = self._describe()
        if live is None or live["EndpointStatus"] == "Deleting":
            return None
        tags = self.live_tags(live["EndpointArn"])
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
        state, names = self.serving.state(), self.ctx.names
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
    def _wait(
        self, phase: str, done: Callable[[dict[str, Any] | None], bool]
    ) -> dict[str, Any] | None:
        """Describe the endpoint until `done`, reporting progress, within the time budget."""
        clock = self.ctx.clock

        def attempt() -> dict[str, Any] | Pending | None:
            live = self._describe()
            return live if done(live) else Pending(live, live["EndpointStatus"] if live else "gone")

        def report(last: Pending, elapsed: float) -> None:
            self.ctx.progress(
                self.key,
                f"{phase}: {last.why}, {_duration(elapsed)} elapsed of "
                f"{_duration(self.timeout)} budget",
            )

        started = clock.now()
        try:
            return poll(
                attempt, timeout=self.timeout, clock=clock, backoff=BACKOFF, progress=report
            )
        except TimedOut as exc:
            status = exc.last.why if exc.last else "unknown"
            raise MlpipeError(
                f"endpoint {self.physical} is still {status} after "
                f"{_duration(clock.now() - started)} ({phase}); endpoint.wait_timeout_seconds "
                f"allows {_duration(self.timeout)}. SageMaker carries on: run the command again "
                "later to continue from there, or raise the budget"
            ) from None

    def settled(self, phase: str) -> dict[str, Any] | None:
        """The endpoint once no operation is in progress on it (None when there is none)."""
        return self._wait(phase, lambda d: d is None or d["EndpointStatus"] not in IN_PROGRESS)

    def _stable(self, phase: str) -> dict[str, Any]:
        live = self.settled(phase)
        if live is None:
            raise MlpipeError(f"endpoint {self.physical} disappeared while {phase}")
        return live

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
                if self.ctx.owns(read_tags(self.sm, config["EndpointConfigArn"])):
                    found.append((config["CreationTime"], config["EndpointConfigName"]))
        return [name for _, name in sorted(found, reverse=True)]

    def _prune(self, keep: set[str]) -> None:
        """Keep the live and the previous config, and the newest others up to keep_configs."""
        others = [name for name in self._owned_configs() if name not in keep]
        spare = max(0, self.ctx.spec.endpoint.keep_configs - len(keep))
        for name in others[spare:]:
            forget(self.sm, "delete_endpoint_config", EndpointConfigName=name)

    def create(self, desired: dict[str, Any]) -> Outputs:
        if self._describe() is not None:  # still being deleted (read treats it as absent)
            self._wait("waiting for the previous endpoint to be deleted", lambda d: d is None)
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
        return self._outputs(self._shift_weights(live, desired["Weights"]))

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
        return self._outputs(live)

    def delete(self, observed: Observed) -> None:
        # Deleting the endpoint deregisters its variants (a replacement's targets are registered
        # again by `autoscaling.VariantScaling`, which follows the endpoint).
        autoscaling.release(self.ctx, self.physical)
        forget(self.sm, "delete_endpoint", EndpointName=self.physical)
        self._wait("deleting the endpoint", lambda d: d is None)
        for name in self._owned_configs():
            forget(self.sm, "delete_endpoint_config", EndpointConfigName=name)

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


def settled_endpoint(ctx: Context, timeout: float | None = None) -> dict[str, Any] | None:
    """The endpoint once no operation is in progress on it (None when there is none)."""
    endpoint = Endpoint(ctx, Serving(ctx), timeout)
    return endpoint.settled("waiting for the endpoint's current operation to finish")
