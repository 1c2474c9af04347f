"""Every resource kind of the pipeline, assembled from the spec."""

from __future__ import annotations

from mlpipe.core.context import Context
from mlpipe.core.resource import Resource
from mlpipe.resources import (
    analytics,
    api,
    api_access,
    artifacts,
    batch,
    dynamodb,
    ecr,
    flow_logs,
    iam,
    kinesis,
    kms,
    lambdas,
    monitoring,
    network,
    s3,
    sagemaker,
    ssm,
    waf,
    workflow,
)

MODULES = (
    kms,
    s3,
    artifacts,
    dynamodb,
    ssm,
    iam,
    sagemaker,
    network,
    flow_logs,
    lambdas,
    kinesis,
    api,
    api_access,
    waf,
    monitoring,
    analytics,
    ecr,
    batch,
    workflow,
)


def build(ctx: Context) -> list[Resource]:
    """All resources the spec declares, in a stable order (the planner sorts by dependency)."""
    return [resource for module in MODULES for resource in module.resources(ctx)]
