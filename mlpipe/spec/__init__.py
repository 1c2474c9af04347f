"""The pipeline spec: pydantic models of `config/pipeline.yaml` and the loader that reads it.

`grammars` holds the value formats (versions, instance types, schedules), `sections` one model
per section, `document` the whole spec with its cross-section checks, `loader` the file reader.
Physical names derive from the spec in `mlpipe.naming`.
"""

from mlpipe.naming import MODEL_NAME_LIMIT, Names
from mlpipe.spec.document import Spec
from mlpipe.spec.grammars import (
    VARIANT_NAME,
    check_instance_type,
    check_schedule,
    check_version,
)
from mlpipe.spec.loader import load_spec
from mlpipe.spec.sections import (
    AccessLogsSpec,
    AlarmThresholds,
    AnalyticsSpec,
    ApiSpec,
    AutoscalingSpec,
    Baseline,
    BatchSpec,
    CacheSpec,
    DataBucketSpec,
    DataCaptureSpec,
    EndpointSpec,
    FunctionSpec,
    KmsSpec,
    LambdasSpec,
    ModelBucketSpec,
    ModelsSpec,
    ModelVersionSpec,
    MonitoringSpec,
    NetworkSpec,
    ScheduleSpec,
    StorageSpec,
    StreamSpec,
    TableSpec,
    ThrottleSpec,
    VariantSpec,
    WafSpec,
    WorkflowSpec,
)

__all__ = [
    "MODEL_NAME_LIMIT",
    "VARIANT_NAME",
    "AccessLogsSpec",
    "AlarmThresholds",
    "AnalyticsSpec",
    "ApiSpec",
    "AutoscalingSpec",
    "Baseline",
    "BatchSpec",
    "CacheSpec",
    "DataBucketSpec",
    "DataCaptureSpec",
    "EndpointSpec",
    "FunctionSpec",
    "KmsSpec",
    "LambdasSpec",
    "ModelBucketSpec",
    "ModelVersionSpec",
    "ModelsSpec",
    "MonitoringSpec",
    "Names",
    "NetworkSpec",
    "ScheduleSpec",
    "Spec",
    "StorageSpec",
    "StreamSpec",
    "TableSpec",
    "ThrottleSpec",
    "VariantSpec",
    "WafSpec",
    "WorkflowSpec",
    "check_instance_type",
    "check_schedule",
    "check_version",
    "load_spec",
]
