"""The sections of the spec, one pydantic model each; unknown keys are refused everywhere."""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from mlpipe.core import images
from mlpipe.spec.grammars import VARIANT_NAME, check_instance_type, check_schedule, check_version


class Strict(BaseModel):
    # Every number AWS takes is finite: YAML's .inf and .nan are refused.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


Percent = Annotated[int, Field(ge=0, le=100)]
Days = Annotated[int, Field(ge=1, le=3650)]
# The Integer of AWS's APIs (Application Auto Scaling capacities, cooldowns, quotas) is 32-bit.
INT32_MAX = 2**31 - 1
Int32 = Annotated[int, Field(le=INT32_MAX)]
# CloudWatch Logs' PutRetentionPolicy accepts only these retentionInDays.
LOG_RETENTION_DAYS = Literal[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731,
    1096, 1827, 2192, 2557, 2922, 3288, 3653,
]  # fmt: skip

# Strings of a grammar (see `grammars`), checked wherever the spec holds one.
Version = Annotated[str, AfterValidator(check_version)]
InstanceType = Annotated[str, AfterValidator(check_instance_type)]
Image = Annotated[str, AfterValidator(images.check)]
Schedule = Annotated[str, AfterValidator(check_schedule)]
# Glue crawlers take EventBridge's cron, and no rate.
Cron = Annotated[str, AfterValidator(partial(check_schedule, rate=False))]


class KmsSpec(Strict):
    rotation: bool = True
    deletion_window_days: Annotated[int, Field(ge=7, le=30)] = 30


class ModelBucketSpec(Strict):
    noncurrent_version_expiration_days: Days = 90
    retain_on_destroy: bool = True


class DataBucketSpec(Strict):
    raw_prefix: str = "raw/"
    raw_expiration_days: Days = 30


class AccessLogsSpec(Strict):
    expiration_days: Days = 365


class TableSpec(Strict):
    ttl_attribute: str = "expirationTime"
    ttl_days: Days = 30
    point_in_time_recovery: bool = True
    deletion_protection: bool = True


class StorageSpec(Strict):
    model_bucket: ModelBucketSpec = ModelBucketSpec()
    data_bucket: DataBucketSpec = DataBucketSpec()
    access_logs: AccessLogsSpec = AccessLogsSpec()
    predictions_table: TableSpec = TableSpec()


class Baseline(Strict):
    accuracy: float | None = Field(default=None, ge=0, le=1)
    latency: float | None = Field(default=None, ge=0, description="milliseconds")


class ModelVersionSpec(Strict):
    # A framework shorthand (sklearn:1.2-1, pytorch:2.0) or a full image URI; default models.image.
    image: Image | None = None
    # A model directory or model.tar.gz (relative to the working directory, as the spec's own
    # path is), or an s3:// URI: apply uploads it and registers the version before creating
    # its SageMaker Model.
    artifact: str | None = None
    baseline: Baseline | None = None

    @field_validator("artifact")
    @classmethod
    def _artifact(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if value.startswith("s3://"):
            if not re.fullmatch(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+", value):
                raise ValueError(f"{value!r} is not an S3 URI like s3://bucket/key")
        elif not Path(value).exists():
            raise ValueError(
                f"{value} does not exist: name a model directory, a model.tar.gz or an s3:// URI"
            )
        return value


class ModelsSpec(Strict):
    # A framework shorthand resolved to SageMaker's prebuilt image of the target region, or a
    # full image URI (an ECR one must be in the target region).
    image: Image = "sklearn:1.2-1"
    active_version: Version = "v1.0.0"
    versions: dict[str, ModelVersionSpec] = {"v1.0.0": ModelVersionSpec()}
    # Alarms (by purpose, for the variant being promoted) that abort a canary promotion.
    canary_alarms: list[str] = ["model-latency-p99", "invocation-4xx", "invocation-5xx"]
    # The lock's lease: renewed while an operation runs, taken over once not renewed this long.
    lock_lease_seconds: Annotated[int, Field(ge=15, le=3600)] = 120

    @field_validator("versions")
    @classmethod
    def _versions(cls, value: dict[str, ModelVersionSpec]) -> dict[str, ModelVersionSpec]:
        for version in value:
            check_version(version)
        if not value:
            raise ValueError("declare at least one model version")
        return value

    @model_validator(mode="after")
    def _active_declared(self) -> ModelsSpec:
        if self.active_version not in self.versions:
            raise ValueError(
                f"active_version {self.active_version} is not among versions "
                f"({', '.join(self.versions)})"
            )
        return self


INTERFACE_ENDPOINTS = (
    "sagemaker.runtime",
    "ssm",
    "kinesis-streams",
    "logs",
    "xray",
    "sts",
    "monitoring",
    "ecr.api",
    "ecr.dkr",
    "sns",
    "states",
    "sqs",
)


class NetworkSpec(Strict):
    cidr: str = "10.0.0.0/16"
    availability_zones: Annotated[int, Field(ge=2, le=6)] = 2
    subnet_prefix_length: Annotated[int, Field(ge=16, le=28)] = 24
    # Bounds the wait for VPC endpoints and network interfaces to go away on delete.
    delete_timeout_seconds: Annotated[int, Field(ge=1, le=7200)] = 1800
    interface_endpoints: list[str] = [
        "sagemaker.runtime",
        "ssm",
        "kinesis-streams",
        "logs",
        "xray",
    ]

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        import ipaddress

        try:
            net = ipaddress.ip_network(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a CIDR block like 10.0.0.0/16") from exc
        if not 16 <= net.prefixlen <= 24:
            raise ValueError(f"VPC prefix length must be /16 to /24, got /{net.prefixlen}")
        return value

    @field_validator("interface_endpoints")
    @classmethod
    def _endpoints(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(INTERFACE_ENDPOINTS))
        if unknown:
            raise ValueError(
                f"unknown interface endpoint(s) {', '.join(unknown)}; "
                f"choose from {', '.join(INTERFACE_ENDPOINTS)}"
            )
        if "sagemaker.runtime" not in value:
            raise ValueError("sagemaker.runtime is required: the Lambdas invoke the endpoint")
        return value

    @model_validator(mode="after")
    def _subnets_fit(self) -> NetworkSpec:
        import ipaddress

        spare = self.subnet_prefix_length - ipaddress.ip_network(self.cidr).prefixlen
        if spare < 0 or 2**spare < self.availability_zones:
            raise ValueError(
                f"{self.availability_zones} subnets of /{self.subnet_prefix_length} do not fit "
                f"in {self.cidr}"
            )
        return self


class VariantSpec(Strict):
    name: Annotated[str, Field(pattern=f"^{VARIANT_NAME.pattern}$")]
    version: Version
    weight: Percent
    instance_count: Annotated[int, Field(ge=1, le=10)] = 1
    instance_type: InstanceType | None = None


class DataCaptureSpec(Strict):
    enabled: bool = True
    sampling_percentage: Percent = 10


class EndpointSpec(Strict):
    instance_type: InstanceType = "ml.m5.large"
    variants: list[VariantSpec] = [
        VariantSpec(name="ModelA", version="v1.0.0", weight=80),
        VariantSpec(name="ModelB", version="v1.0.0", weight=20),
    ]
    data_capture: DataCaptureSpec = DataCaptureSpec()
    keep_configs: Annotated[int, Field(ge=2, le=20)] = 3
    wait_timeout_seconds: Annotated[int, Field(ge=1, le=7200)] = 1800

    @field_validator("variants")
    @classmethod
    def _variants(cls, value: list[VariantSpec]) -> list[VariantSpec]:
        names = [v.name for v in value]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must be unique, got {', '.join(names)}")
        if not 1 <= len(value) <= 10:
            raise ValueError(f"an endpoint has 1 to 10 variants, got {len(value)}")
        total = sum(v.weight for v in value)
        if total != 100:
            raise ValueError(f"weights must add up to 100, got {total}")
        return value


class AutoscalingSpec(Strict):
    min_capacity: Annotated[Int32, Field(ge=1)] = 1
    max_capacity: Annotated[Int32, Field(ge=1)] = 10
    target_invocations_per_instance: Annotated[float, Field(gt=0)] = 1000
    scale_in_cooldown_seconds: Annotated[Int32, Field(ge=0)] = 300
    scale_out_cooldown_seconds: Annotated[Int32, Field(ge=0)] = 60

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingSpec:
        if self.min_capacity > self.max_capacity:
            raise ValueError(
                f"min_capacity ({self.min_capacity}) exceeds max_capacity ({self.max_capacity})"
            )
        return self


class FunctionSpec(Strict):
    memory_mb: Annotated[int, Field(ge=128, le=10240)] = 512
    timeout_seconds: Annotated[int, Field(ge=1, le=900)] = 30
    reserved_concurrency: Annotated[Int32, Field(ge=0)] | None = 50


class LambdasSpec(Strict):
    runtime: Literal["python3.11"] = "python3.11"
    log_retention_days: LOG_RETENTION_DAYS = 30
    ssm_cache_ttl_seconds: Annotated[int, Field(ge=0, le=3600)] = 30
    feature_count: Annotated[int, Field(ge=1, le=100_000)] | None = None
    preprocess: FunctionSpec = FunctionSpec()
    stream_processor: FunctionSpec = FunctionSpec(timeout_seconds=60, reserved_concurrency=10)


class CacheSpec(Strict):
    enabled: bool = True
    size_gb: Literal["0.5", "1.6", "6.1", "13.5", "28.4", "58.2", "118", "237"] = "0.5"
    ttl_seconds: Annotated[int, Field(ge=0, le=3600)] = 300
    encrypted: bool = True
    key_header: str = "X-Features-Hash"


class ThrottleSpec(Strict):
    rate_limit: Annotated[float, Field(gt=0)] = 100
    burst_limit: Annotated[Int32, Field(gt=0)] = 200
    quota_per_day: Annotated[Int32, Field(gt=0)] | None = 100_000


class WafSpec(Strict):
    # Requests one client IP may send in any 5 minutes before AWS WAF blocks it.
    rate_limit: Annotated[int, Field(ge=10, le=2_000_000_000)] = 2000


class ApiSpec(Strict):
    stage: Annotated[str, Field(pattern=r"^[a-zA-Z0-9_]{1,128}$")] = "prod"
    auth: Literal["api_key", "iam", "none"] = "api_key"
    cache: CacheSpec = CacheSpec()
    throttle: ThrottleSpec = ThrottleSpec()
    logging_level: Literal["INFO", "ERROR", "OFF"] = "INFO"
    tracing: bool = True
    metrics: bool = True
    waf: WafSpec = WafSpec()


class StreamSpec(Strict):
    shards: Annotated[int, Field(ge=1, le=500)] = 2
    retention_hours: Annotated[int, Field(ge=24, le=8760)] = 24
    batch_size: Annotated[int, Field(ge=1, le=10000)] = 100
    batching_window_seconds: Annotated[int, Field(ge=0, le=300)] = 5
    bisect_on_error: bool = True
    retry_attempts: Annotated[int, Field(ge=-1, le=10000)] = 3
    starting_position: Literal["LATEST", "TRIM_HORIZON"] = "LATEST"


class BatchSpec(Strict):
    compute: Literal["FARGATE", "FARGATE_SPOT"] = "FARGATE"
    max_vcpus: Annotated[int, Field(ge=1, le=10000)] = 256
    # A tag of the pipeline's repository (`<pipeline>-<environment>-batch`, built from
    # batch_job/Dockerfile), or an image URI.
    image: str = "1.0.0"
    # Fargate's vCPU sizes (pydantic takes float literals; the typing spec does not).
    vcpus: Literal[0.25, 0.5, 1, 2, 4, 8, 16] = 4  # type: ignore[valid-type]
    memory_mib: Annotated[int, Field(ge=512, le=122880)] = 8192
    shards: Annotated[int, Field(ge=1, le=40)] = 2
    job_attempts: Annotated[int, Field(ge=1, le=10)] = 2
    max_bad_records: Annotated[float, Field(ge=0, le=INT32_MAX)] = 0.05
    # Bounds the waits for the compute environment and job queue to become VALID or go away.
    wait_timeout_seconds: Annotated[int, Field(ge=1, le=7200)] = 900

    @model_validator(mode="after")
    def _fargate_size(self) -> BatchSpec:
        allowed = FARGATE_MEMORY[self.vcpus]
        if self.memory_mib not in allowed:
            sizes = ", ".join(map(str, allowed[:3]))
            if len(allowed) > 3:
                sizes += f", ... {allowed[-1]} (steps of {allowed[1] - allowed[0]})"
            raise ValueError(
                f"Fargate runs {self.vcpus} vCPU with {sizes} MiB of memory, "
                f"got memory_mib {self.memory_mib}"
            )
        return self


# The memory sizes (MiB) Fargate offers for each vCPU size.
FARGATE_MEMORY: dict[float, tuple[int, ...]] = {
    0.25: (512, 1024, 2048),
    0.5: tuple(range(1024, 4097, 1024)),
    1: tuple(range(2048, 8193, 1024)),
    2: tuple(range(4096, 16385, 1024)),
    4: tuple(range(8192, 30721, 1024)),
    8: tuple(range(16384, 61441, 4096)),
    16: tuple(range(32768, 122881, 8192)),
}


class ScheduleSpec(Strict):
    enabled: bool = True
    batch_cron: Schedule = "cron(0 2 * * ? *)"


class WorkflowSpec(Strict):
    timeout_seconds: Annotated[int, Field(ge=60, le=31_536_000)] = 7200
    retry_max_attempts: Annotated[int, Field(ge=0, le=10)] = 2
    # Step Functions Retrier: IntervalSeconds 1..99999999, BackoffRate >= 1.0.
    retry_interval_seconds: Annotated[int, Field(ge=1, le=99_999_999)] = 30
    retry_backoff_rate: Annotated[float, Field(ge=1, le=1000)] = 2.0


class AlarmThresholds(Strict):
    model_latency_p99_ms: Annotated[float, Field(gt=0)] = 2000
    model_latency_periods: Annotated[int, Field(ge=1, le=1440)] = 2
    invocation_4xx: Annotated[float, Field(ge=0)] = 50
    invocation_5xx: Annotated[float, Field(ge=0)] = 1
    lambda_errors: Annotated[float, Field(ge=0)] = 1
    lambda_throttles: Annotated[float, Field(ge=0)] = 1
    iterator_age_ms: Annotated[float, Field(gt=0)] = 60_000
    workflow_failures: Annotated[float, Field(ge=0)] = 1


class MonitoringSpec(Strict):
    alert_email: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")] | None = (
        "team@example.com"
    )
    log_retention_days: LOG_RETENTION_DAYS = 30
    period_seconds: Literal[60, 300, 900, 3600] = 300
    alarms: AlarmThresholds = AlarmThresholds()

    @model_validator(mode="after")
    def _evaluation_window(self) -> MonitoringSpec:
        # PutMetricAlarm: EvaluationPeriods x Period must be at most one day.
        window = self.alarms.model_latency_periods * self.period_seconds
        if window > 86_400:
            raise ValueError(
                f"alarms.model_latency_periods x period_seconds is {window} s; CloudWatch "
                "evaluates at most one day (86400 s)"
            )
        return self


class AnalyticsSpec(Strict):
    crawler_schedule: Cron = "cron(0 3 * * ? *)"
    crawl_dynamodb: bool = True
    bytes_scanned_cutoff: Annotated[int, Field(ge=10_000_000, le=2**63 - 1)] | None = 10_000_000_000
