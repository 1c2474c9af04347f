"""The pipeline's network: an isolated VPC that reaches AWS only through VPC endpoints.

Private subnets in the first N availability zones, one route table with no way out but the
gateway endpoints (S3, DynamoDB), interface endpoints for the APIs the handlers call, and
security groups whose egress is HTTPS to those endpoints only. EC2 resources have no name of
their own: each is found by its `mlpipe:pipeline` + `mlpipe:resource` tags.

`vpc` holds the VPC, subnets and route table; `security_groups` the groups and their rules;
`endpoints` the VPC endpoints and their policies; `region` the region's facts they read;
`common` the keys, the `Ec2` base and the bounded delete.
"""

from __future__ import annotations

from mlpipe.core.context import Context
from mlpipe.core.resource import Resource
from mlpipe.resources.network.common import (
    DEFAULT_SG,
    GATEWAY_ENDPOINTS,
    INTERFACE_ENDPOINTS,
    LAMBDA_ENI,
    ROUTE_TABLE,
    SG_BATCH,
    SG_ENDPOINTS,
    SG_LAMBDA,
    SG_SAGEMAKER,
    VPC,
    Ec2,
    lambda_interfaces,
    subnet_keys,
    wait_for_lambda_interfaces,
)
from mlpipe.resources.network.endpoints import (
    GatewayEndpoint,
    InterfaceEndpoints,
    interface_policy,
)
from mlpipe.resources.network.region import Region
from mlpipe.resources.network.security_groups import (
    DefaultSecurityGroup,
    SecurityGroup,
    permissions,
    rules,
)
from mlpipe.resources.network.vpc import RouteTable, Subnet, Vpc

__all__ = [
    "DEFAULT_SG",
    "GATEWAY_ENDPOINTS",
    "INTERFACE_ENDPOINTS",
    "LAMBDA_ENI",
    "ROUTE_TABLE",
    "SG_BATCH",
    "SG_ENDPOINTS",
    "SG_LAMBDA",
    "SG_SAGEMAKER",
    "VPC",
    "Ec2",
    "interface_policy",
    "lambda_interfaces",
    "permissions",
    "resources",
    "rules",
    "subnet_keys",
    "wait_for_lambda_interfaces",
]


def resources(ctx: Context) -> list[Resource]:
    """The network's resources; those that read the region's facts share one `Region`."""
    region = Region(ctx)
    return [
        Vpc(ctx),
        *(Subnet(ctx, i, region) for i in range(ctx.spec.network.availability_zones)),
        RouteTable(ctx),
        SecurityGroup(ctx, region, "lambda", "mlpipe Lambdas: HTTPS to the VPC endpoints only"),
        SecurityGroup(ctx, region, "batch", "mlpipe Batch jobs: HTTPS to the VPC endpoints only"),
        SecurityGroup(
            ctx,
            region,
            "endpoints",
            "mlpipe interface endpoints: HTTPS from the Lambdas and Batch jobs",
            ingress_from=(SG_LAMBDA, SG_BATCH),
        ),
        # With network isolation the model container makes no call; SageMaker fetches the
        # model artifacts through the VPC, from S3 only (its gateway endpoint). Images are
        # pulled by the platform (RepositoryAccessMode Platform), not through the VPC.
        SecurityGroup(
            ctx,
            region,
            "sagemaker",
            "mlpipe SageMaker models: HTTPS to S3 only",
            egress_to=("s3",),
        ),
        *(GatewayEndpoint(ctx, service) for service in GATEWAY_ENDPOINTS),
        InterfaceEndpoints(ctx),
        DefaultSecurityGroup(ctx),
    ]
