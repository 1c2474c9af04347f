"""The pipeline spec: pydantic models of `config/pipeline.yaml`, and every derived name.

Unknown keys are refused everywhere. Names derive from `pipeline` + `environment` here and
nowhere else, and are checked against each service's naming rules when the spec is loaded.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mlpipe.core import images
from mlpipe.core.errors import SpecError

# A model version: SemVer 2.0 (https://semver.org) with a leading `v` and without build metadata,
# e.g. v1.2.3 or v2.0.0-rc.1: three numbers without leading zeros, then optionally `-` and
# dot-separated pre-release identifiers (numeric ones without leading zeros). At most 64
# characters. `\A...\Z` (not `^...$`, which also matches before a final newline): the whole
# value must match.
VERSION_RE = re.compile(
    r"\Av(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*)?\Z"
)
MAX_VERSION_LENGTH = 64


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
# A SageMaker instance type: `ml.` + family + size (every ProductionVariantInstanceType of
# botocore's SageMaker model has this form).
INSTANCE_TYPE = re.compile(
    r"ml\.[a-z]+[0-9]+[a-z0-9-]*\.(nano|micro|small|medium|large|xlarge|[1-9][0-9]*xlarge|metal(-[0-9]+xl)?)"
)


def check_instance_type(value: str) -> str:
    if not INSTANCE_TYPE.fullmatch(value):
        hint = f" (did you mean 'ml.{value}'?)" if INSTANCE_TYPE.fullmatch(f"ml.{value}") else ""
        raise ValueError(f"{value!r} is not a SageMaker instance type like ml.m5.large{hint}")
    return value


def check_version(value: str) -> str:
    """`value` if it is a model version (see VERSION_RE), else ValueError saying why."""
    if len(value) > MAX_VERSION_LENGTH:
        raise ValueError(f"a version has at most {MAX_VERSION_LENGTH} characters, got {len(value)}")
    if not VERSION_RE.match(value):
        raise ValueError(f"{value!r} is not a version like v1.2.3 or v2.0.0-rc.1")
    return value


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
    image: str | None = None
    # A model directory or model.tar.gz (relative to the working directory, as the spec's own
    # path is), or an s3:// URI: apply uploads it and registers the version before creating
    # its SageMaker Model.
    artifact: str | None = None
    baseline: Baseline | None = None

    @field_validator("image")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        return None if value is None else images.check(value)

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
    image: str = "sklearn:1.2-1"
    active_version: str = "v1.0.0"
    versions: dict[str, ModelVersionSpec] = {"v1.0.0": ModelVersionSpec()}
    # Alarms (by purpose, for the variant being promoted) that abort a canary promotion.
    canary_alarms: list[str] = ["model-latency-p99", "invocation-4xx", "invocation-5xx"]
    # The lock's lease: renewed while an operation runs, taken over once not renewed this long.
    lock_lease_seconds: Annotated[int, Field(ge=15, le=3600)] = 120

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        return images.check(value)

    @field_validator("active_version")
    @classmethod
    def _active(cls, value: str) -> str:
        return check_version(value)

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


# A SageMaker production variant name.
VARIANT_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")


class VariantSpec(Strict):
    name: Annotated[str, Field(pattern=r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")]
    version: str
    weight: Percent
    instance_count: Annotated[int, Field(ge=1, le=10)] = 1
    instance_type: str | None = None

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        return check_version(value)

    @field_validator("instance_type")
    @classmethod
    def _instance_type(cls, value: str | None) -> str | None:
        return None if value is None else check_instance_type(value)


class DataCaptureSpec(Strict):
    enabled: bool = True
    sampling_percentage: Percent = 10


class EndpointSpec(Strict):
    instance_type: str = "ml.m5.large"
    variants: list[VariantSpec] = [
        VariantSpec(name="ModelA", version="v1.0.0", weight=80),
        VariantSpec(name="ModelB", version="v1.0.0", weight=20),
    ]
    data_capture: DataCaptureSpec = DataCaptureSpec()
    keep_configs: Annotated[int, Field(ge=2, le=20)] = 3
    wait_timeout_seconds: Annotated[int, Field(ge=1, le=7200)] = 1800

    @field_validator("instance_type")
    @classmethod
    def _instance_type(cls, value: str) -> str:
        return check_instance_type(value)

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
    vcpus: Literal[0.25, 0.5, 1, 2, 4, 8, 16] = 4
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


# EventBridge's cron fields: name, lowest, highest, names for values, special characters.
# https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-scheduled-rule-pattern.html
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
CRON_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minutes", 0, 59, ()),
    ("hours", 0, 23, ()),
    ("day-of-month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 1, 7, _DAYS),
    ("year", 1970, 2199, ()),
)


def _cron_value(text: str, low: int, high: int, names: tuple[str, ...]) -> int:
    if text.upper() in names:
        return names.index(text.upper()) + low
    if not re.fullmatch(r"\d{1,4}", text) or not low <= int(text) <= high:
        named = f" or {names[0]}-{names[-1]}" if names else ""
        raise ValueError(f"{text!r} is not {low}-{high}{named}")
    return int(text)


def _cron_field(text: str, index: int) -> None:
    name, low, high, names = CRON_FIELDS[index]
    if text == "?":
        if name not in ("day-of-month", "day-of-week"):
            raise ValueError(f"{name}: ? is only for day-of-month or day-of-week")
        return
    for part in text.split(","):
        special = re.fullmatch(r"L|LW|(\d{1,2})W" if index == 2 else r"(\w+)(#[1-5]|L)", part)
        if special and index in (2, 4):  # L, LW, 15W; 6L, 2#1
            if special[1]:
                _cron_value(special[1], low, high, names)
            continue
        base, slash, step = part.partition("/")
        if slash and not (step.isdigit() and 0 < int(step) <= high):
            raise ValueError(f"{name}: step {step!r} of {part!r} is not 1-{high}")
        if base == "*":
            continue
        first, dash, last = base.partition("-")
        try:
            _cron_value(first, low, high, names)
            if dash:
                _cron_value(last, low, high, names)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None


def check_schedule(value: str, *, rate: bool = True) -> str:
    """An EventBridge schedule expression: cron(6 fields) or, if `rate`, rate(N unit)."""
    if rate and value.startswith("rate("):
        match = re.fullmatch(r"rate\(([1-9]\d{0,8}) (minutes?|hours?|days?)\)", value)
        if not match:
            raise ValueError(f"{value!r} is not a rate like rate(5 minutes) or rate(1 hour)")
        if (match[1] == "1") != (not match[2].endswith("s")):
            unit = match[2].rstrip("s") + ("" if match[1] == "1" else "s")
            raise ValueError(f"{value!r}: write rate({match[1]} {unit})")
        return value
    match = re.fullmatch(r"cron\(([^()]+)\)", value)
    fields = match[1].split(" ") if match else []
    if len(fields) != 6:
        raise ValueError(
            f"{value!r} is not a cron expression with six fields "
            "(minutes hours day-of-month month day-of-week year), e.g. cron(0 2 * * ? *)"
        )
    try:
        for index, text in enumerate(fields):
            _cron_field(text, index)
    except ValueError as exc:
        raise ValueError(f"{value!r}: {exc}") from None
    if (fields[2] == "?") == (fields[4] == "?"):
        raise ValueError(
            f"{value!r}: one of day-of-month and day-of-week must be ?, not both or neither"
        )
    return value


class ScheduleSpec(Strict):
    enabled: bool = True
    batch_cron: str = "cron(0 2 * * ? *)"

    @field_validator("batch_cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        return check_schedule(value)


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
    crawler_schedule: str = "cron(0 3 * * ? *)"
    crawl_dynamodb: bool = True
    bytes_scanned_cutoff: Annotated[int, Field(ge=10_000_000, le=2**63 - 1)] | None = 10_000_000_000

    @field_validator("crawler_schedule")
    @classmethod
    def _crawler_cron(cls, value: str) -> str:
        return check_schedule(value, rate=False)  # Glue takes the same cron, and no rate


TAG_KEY = re.compile(r"^[\w.:/=+\-@ ]{1,128}$")


class Spec(Strict):
    pipeline: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,22}[a-z0-9]$")]
    environment: Annotated[str, Field(pattern=r"^[a-z][a-z0-9]{0,9}$")]
    tags: dict[str, str] = {}
    kms: KmsSpec = KmsSpec()
    storage: StorageSpec = StorageSpec()
    models: ModelsSpec = ModelsSpec()
    network: NetworkSpec = NetworkSpec()
    endpoint: EndpointSpec = EndpointSpec()
    autoscaling: AutoscalingSpec = AutoscalingSpec()
    lambdas: LambdasSpec = LambdasSpec()
    api: ApiSpec = ApiSpec()
    stream: StreamSpec = StreamSpec()
    batch: BatchSpec = BatchSpec()
    schedule: ScheduleSpec = ScheduleSpec()
    workflow: WorkflowSpec = WorkflowSpec()
    monitoring: MonitoringSpec = MonitoringSpec()
    analytics: AnalyticsSpec = AnalyticsSpec()

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, str]) -> dict[str, str]:
        for key, tag_value in value.items():
            if key.lower().startswith(("aws:", "mlpipe:")):
                raise ValueError(f"tag key {key!r} uses a reserved prefix (aws:, mlpipe:)")
            if not TAG_KEY.match(key) or len(tag_value) > 256:
                raise ValueError(f"tag {key!r} is not a valid AWS tag (key <= 128, value <= 256)")
        if len(value) > 40:
            raise ValueError(
                f"at most 40 tags (AWS allows 50, mlpipe adds its own), got {len(value)}"
            )
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> Spec:
        for variant in self.endpoint.variants:
            if variant.version not in self.models.versions:
                raise ValueError(
                    f"endpoint.variants: {variant.name} serves {variant.version}, which is not "
                    "declared under models.versions"
                )
        problems = Names(self.pipeline, self.environment).problems(self)
        if problems:
            raise ValueError("pipeline, environment: " + "; ".join(problems))
        return self


# Worst cases used when checking name lengths before the account and region are known.
PLACEHOLDER_ACCOUNT = "123456789012"
LONGEST_REGION = "ap-southeast-5x"


MODEL_NAME_LIMIT = 63  # SageMaker CreateModel: ModelName, 1 to 63 characters


@dataclass(frozen=True)
class Names:
    """Every physical name of the pipeline, derived from pipeline + environment."""

    pipeline: str
    environment: str
    account: str = PLACEHOLDER_ACCOUNT
    region: str = LONGEST_REGION

    @property
    def pipeline_id(self) -> str:
        return f"{self.pipeline}-{self.environment}"

    def _n(self, suffix: str) -> str:
        return f"{self.pipeline_id}-{suffix}"

    # Security and storage
    kms_alias = property(lambda self: f"alias/{self.pipeline_id}")
    model_bucket = property(lambda self: self._n(f"models-{self.account}-{self.region}"))
    data_bucket = property(lambda self: self._n(f"data-{self.account}-{self.region}"))
    access_log_bucket = property(lambda self: self._n(f"logs-{self.account}-{self.region}"))
    predictions_table = property(lambda self: self._n("predictions"))

    # Parameter Store registry
    ssm_prefix = property(lambda self: f"/{self.pipeline}/{self.environment}")
    active_version_param = property(lambda self: f"{self.ssm_prefix}/models/active-version")
    deployment_param = property(lambda self: f"{self.ssm_prefix}/models/deployment")
    lock_param = property(lambda self: f"{self.ssm_prefix}/models/lock")

    def metadata_param(self, version: str) -> str:
        return f"{self.ssm_prefix}/models/versions/{version}/metadata"

    def role(self, purpose: str) -> str:
        return self._n(purpose)

    role_path = property(lambda self: f"/mlpipe/{self.pipeline_id}/")

    # Serving
    endpoint = property(lambda self: self._n("endpoint"))

    def model(self, version: str) -> str:
        """The SageMaker model of a version, one per version and at most 63 characters: dots
        become hyphens; when anything else had to change (`v1.0.0-rc.1` and `v1.0.0-rc-1`
        sanitise alike) or the name is too long, a hash of the version is appended."""
        name = self._n("model-" + re.sub(r"[^a-zA-Z0-9]", "-", version))
        if re.fullmatch(r"[a-zA-Z0-9.]+", version) and len(name) <= MODEL_NAME_LIMIT:
            return name
        digest = hashlib.sha256(version.encode()).hexdigest()[:10]
        return f"{name[: MODEL_NAME_LIMIT - len(digest) - 1].rstrip('-')}-{digest}"

    def endpoint_config(self, content: str) -> str:
        return self.endpoint_config_prefix + hashlib.sha256(content.encode()).hexdigest()[:12]

    endpoint_config_prefix = property(lambda self: self._n("config-"))
    model_prefix = property(lambda self: self._n("model-"))

    def function(self, purpose: str) -> str:
        return self._n(purpose)

    def function_log_group(self, purpose: str) -> str:
        return f"/aws/lambda/{self.function(purpose)}"

    vpc = property(lambda self: self._n("vpc"))
    private_route_table = property(lambda self: self._n("private-routes"))

    def subnet(self, index: int) -> str:
        return self._n(f"private-{index}")

    def security_group(self, purpose: str) -> str:
        return self._n(f"{purpose}-sg")

    flow_log_group = property(lambda self: f"/aws/vpc-flow-logs/{self.pipeline_id}")

    def vpc_endpoint(self, service: str) -> str:
        return self._n("vpce-" + service.replace(".", "-"))

    api = property(lambda self: self._n("inference-api"))
    stream = property(lambda self: self._n("inference-stream"))
    stream_dlq = property(lambda self: self._n("stream-failures"))
    api_key = property(lambda self: self._n("api-key"))
    web_acl = property(lambda self: self._n("api-waf"))
    usage_plan = property(lambda self: self._n("usage-plan"))
    # Statement id of the Lambda permission that lets the API invoke the preprocess function.
    api_invoke_sid = property(lambda self: self._n("api-invoke"))

    # Batch and orchestration
    compute_environment = property(lambda self: self._n("batch-compute"))
    job_queue = property(lambda self: self._n("batch-queue"))
    job_definition = property(lambda self: self._n("batch-inference"))
    batch_log_group = property(lambda self: f"/aws/batch/{self.pipeline_id}")
    state_machine = property(lambda self: self._n("batch-workflow"))
    workflow_log_group = property(lambda self: f"/aws/vendedlogs/states/{self.pipeline_id}")
    schedule_rule = property(lambda self: self._n("batch-schedule"))

    # Monitoring and analytics
    alert_topic = property(lambda self: self._n("alerts"))
    dashboard = property(lambda self: self._n("metrics"))

    def alarm(self, purpose: str) -> str:
        return self._n(purpose)

    glue_database = property(lambda self: self.pipeline_id.replace("-", "_"))
    crawler = property(lambda self: self._n("predictions-crawler"))
    workgroup = property(lambda self: self._n("analytics"))

    def problems(self, spec: Spec) -> list[str]:
        """Names that break a service's rules, checked with the worst-case account/region."""
        rules: list[tuple[str, str, int, str]] = [
            ("S3 bucket", self.model_bucket, 63, r"[a-z0-9][a-z0-9.-]*[a-z0-9]"),
            ("S3 bucket", self.data_bucket, 63, r"[a-z0-9][a-z0-9.-]*[a-z0-9]"),
            ("DynamoDB table", self.predictions_table, 255, r"[a-zA-Z0-9_.-]+"),
            ("SageMaker endpoint", self.endpoint, 63, r"[a-zA-Z0-9](-*[a-zA-Z0-9])*"),
            ("SageMaker endpoint config", self.endpoint_config(""), 63, r"[a-zA-Z0-9-]+"),
            ("Lambda function", self.function("stream-processor"), 64, r"[a-zA-Z0-9-_]+"),
            ("IAM role", self.role("stepfunctions-role"), 64, r"[\w+=,.@-]+"),
            ("Kinesis stream", self.stream, 128, r"[a-zA-Z0-9_.-]+"),
            ("Batch compute environment", self.compute_environment, 128, r"[a-zA-Z0-9_-]+"),
            ("Step Functions state machine", self.state_machine, 80, r"[a-zA-Z0-9_-]+"),
            ("EventBridge rule", self.schedule_rule, 64, r"[\.\-_A-Za-z0-9]+"),
            ("Athena workgroup", self.workgroup, 128, r"[a-zA-Z0-9._-]+"),
            ("Glue crawler", self.crawler, 255, r"[\w.-]+"),
        ]
        rules += [
            ("SageMaker model", self.model(v), 63, r"[a-zA-Z0-9](-*[a-zA-Z0-9])*")
            for v in spec.models.versions
        ]
        found = []
        for what, name, limit, pattern in rules:
            if len(name) > limit:
                found.append(
                    f"{what} name {name!r} would be {len(name)} characters, over AWS's limit of "
                    f"{limit}: shorten pipeline or environment"
                )
            elif not re.fullmatch(pattern, name):
                found.append(f"{what} name {name!r} has characters AWS does not allow")
        return found


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# Bounds on what a spec file may hold before anything is parsed into objects.
MAX_SPEC_BYTES = 1024 * 1024
MAX_SPEC_DEPTH = 32


class _SpecLimit(yaml.MarkedYAMLError):
    """A spec file breaks one of the loader's own rules (duplicate key, depth)."""


class _SpecLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML keeps the last one silently) and nesting
    deeper than MAX_SPEC_DEPTH (which would otherwise end in a RecursionError)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_SPEC_DEPTH:
                raise _SpecLimit(
                    None,
                    None,
                    f"nested deeper than {MAX_SPEC_DEPTH} levels",
                    self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` keys may be overridden by the mapping's own
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:
                continue  # an unhashable key: the base class reports it
            if first is not key_node.start_mark:
                raise _SpecLimit(
                    None,
                    None,
                    f"duplicate key {key!r} (first at line {first.line + 1})",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep)


def load_spec(path: str | Path) -> Spec:
    """Load and validate a spec file; every problem becomes one `file: key: reason` line."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise SpecError([f"{path}: {size} bytes; a spec has at most {MAX_SPEC_BYTES}"])
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise SpecError([f"{path}: file not found (pass --spec PATH)"]) from exc
    except OSError as exc:
        raise SpecError([f"{path}: cannot read: {exc.strerror or exc}"]) from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SpecError(
            [f"{path}: line {line}: byte {exc.start} (0x{data[exc.start]:02x}) is not UTF-8"]
        ) from exc
    try:
        raw = yaml.load(text, Loader=_SpecLoader)  # a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        kind = "" if isinstance(exc, _SpecLimit) else "not valid YAML: "
        raise SpecError([f"{path}:{where}: {kind}{getattr(exc, 'problem', exc)}"]) from exc
    except RecursionError as exc:
        raise SpecError([f"{path}: nested too deeply"]) from exc
    if not isinstance(raw, dict):
        raise SpecError([f"{path}: the spec must be a mapping of sections"])
    try:
        return Spec.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = _loc(err["loc"])
            reason = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                reason = "unknown key (check its spelling and section)"
            lines.append(f"{path}: {where}: {reason}" if where else f"{path}: {reason}")
        raise SpecError(lines) from exc
