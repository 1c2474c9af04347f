"""The spec as a whole: its sections, its tags, and the checks that span sections."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator, model_validator

from mlpipe.naming import Names
from mlpipe.spec.grammars import TAG_KEY
from mlpipe.spec.sections import (
    AnalyticsSpec,
    ApiSpec,
    AutoscalingSpec,
    BatchSpec,
    EndpointSpec,
    KmsSpec,
    LambdasSpec,
    ModelsSpec,
    MonitoringSpec,
    NetworkSpec,
    ScheduleSpec,
    StorageSpec,
    StreamSpec,
    Strict,
    WorkflowSpec,
)


class Spec(Strict):
    pipeline: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,22}[a-z0-9]$")]
    environment: Annotated[str, Field(pattern=r"^[a-z][a-z0-9]{0,9}$")]
    tags: dict[str, str] = Field(default_factory=dict)
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
        problems = Names(self.pipeline, self.environment).problems(self.models.versions)
        if problems:
            raise ValueError("pipeline, environment: " + "; ".join(problems))
        return self
