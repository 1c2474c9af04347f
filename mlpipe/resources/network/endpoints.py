"""VPC endpoints, the isolated subnets' only way to AWS: gateway endpoints (S3, DynamoDB) in
the route table, interface endpoints for the other APIs the handlers call, each with a policy
that trusts only the pipeline's account (and lets it reach only the pipeline's data)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any, ClassVar

from mlpipe.core.context import Context
from mlpipe.core.diff import Change, Diff, diff, policy, tags_from_list
from mlpipe.core.resource import Observed, Outputs, Refs
from mlpipe.core.tagging import sync_tags
from mlpipe.naming import Arns
from mlpipe.resources.network.common import (
    GATEWAY_ENDPOINTS,
    INTERFACE_ENDPOINTS,
    ROUTE_TABLE,
    SG_ENDPOINTS,
    VPC,
    Ec2,
    _until,
    subnet_keys,
)

GONE = ("deleted", "deleting", "rejected", "failed")
# What the pipeline's code does through the gateway endpoints (their policies allow no more).
S3_ACTIONS = [
    f"s3:{a}"
    for a in [
        "AbortMultipartUpload",
        "GetBucketLocation",
        "GetObject",
        "GetObjectVersion",
        "ListBucket",
        "ListMultipartUploadParts",
        "PutObject",
    ]
]
DYNAMODB_ACTIONS = [
    f"dynamodb:{a}"
    for a in [
        "BatchGetItem",
        "BatchWriteItem",
        "ConditionCheckItem",
        "DescribeTable",
        "GetItem",
        "PutItem",
        "Query",
        "UpdateItem",
    ]
]
ECR_PULL = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
# Services the handlers call that only an interface endpoint reaches from an isolated subnet.
NEEDED = {"ssm": "the Lambdas and the Batch job read the model registry in Parameter Store"}


def account_only(
    ctx: Context, sid: str, actions: list[str] | str = "*", resources: list[str] | str = "*"
) -> dict[str, Any]:
    """An endpoint policy statement for principals of the pipeline's account acting on
    resources of that account (the AWS data perimeter pattern, `aws:PrincipalAccount` and
    `aws:ResourceAccount`: https://docs.aws.amazon.com/IAM/latest/UserGuide/
    reference_policies_condition-keys.html, https://github.com/aws-samples/
    data-perimeter-policy-examples/tree/main/vpc_endpoint_policies)."""
    account = ctx.aws.account
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Principal": "*",
        "Action": actions,
        "Resource": resources,
        "Condition": {
            "StringEquals": {"aws:PrincipalAccount": account, "aws:ResourceAccount": account}
        },
    }


def interface_policy(ctx: Context, service: str) -> dict[str, Any]:
    """An interface endpoint's policy: the account's principals on the account's resources,
    and for ECR the registry of a Batch image another account (e.g. AWS's) owns."""
    statements = [account_only(ctx, "AccountPrincipalsToAccountResources")]
    registry = Arns(ctx).ecr_repository(ctx.spec.batch.image).split(":")[4]
    if service.startswith("ecr.") and registry != ctx.aws.account:
        statements.append(
            {
                "Sid": "AccountPrincipalsPullBatchImage",
                "Effect": "Allow",
                "Principal": "*",
                "Action": ECR_PULL,
                "Resource": "*",
                "Condition": {
                    "StringEquals": {
                        "aws:PrincipalAccount": ctx.aws.account,
                        "aws:ResourceAccount": registry,
                    }
                },
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


def gateway_policy(ctx: Context, service: str) -> dict[str, Any]:
    """Only the pipeline's own buckets / table, and only for the account's principals."""
    arns, names = Arns(ctx), ctx.names
    if service == "s3":
        buckets = [names.model_bucket, names.data_bucket]
        statements = [
            account_only(
                ctx,
                "PipelineBuckets",
                S3_ACTIONS,
                [arns.bucket(b) for b in buckets] + [arns.bucket(b, "/*") for b in buckets],
            )
        ]
        if "ecr.dkr" in ctx.spec.network.interface_endpoints:
            # ECR serves image layers from this AWS-owned bucket, reached through the
            # gateway with a URL ECR's own account presigned: neither the principal nor the
            # bucket is the pipeline's account (ECR user guide, "Minimum Amazon S3 bucket
            # permissions for Amazon ECR",
            # https://docs.aws.amazon.com/AmazonECR/latest/userguide/vpc-endpoints.html).
            layers = f"prod-{ctx.aws.region}-starport-layer-bucket"
            statements.append(
                {
                    "Sid": "EcrImageLayers",
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": ["s3:GetObject"],
                    "Resource": [arns.bucket(layers, "/*")],
                }
            )
    else:
        statements = [
            account_only(
                ctx, "PredictionsTable", DYNAMODB_ACTIONS, [arns.table, f"{arns.table}/index/*"]
            )
        ]
    return {"Version": "2012-10-17", "Statement": statements}


def _membership(live: Iterable[str], want: Iterable[str], add: str, remove: str) -> dict[str, Any]:
    """`{add: [...], remove: [...]}` for a Modify call, leaving out empty lists."""
    live, want = set(live), set(want)
    found = {add: sorted(want - live), remove: sorted(live - want)}
    return {k: v for k, v in found.items() if v}


class Endpoints(Ec2):
    """VPC endpoints: created with a client token, deleted and waited for until gone."""

    resource_type = "vpc-endpoint"

    def service_name(self, service: str) -> str:
        return f"com.amazonaws.{self.ctx.aws.region}.{service}"

    def live(self, endpoint_type: str) -> list[dict[str, Any]]:
        found = self.ec2.describe_vpc_endpoints(
            Filters=[*self.tag_filters(), {"Name": "vpc-endpoint-type", "Values": [endpoint_type]}]
        )["VpcEndpoints"]
        return [e for e in found if e["State"].lower() not in GONE]

    def create_endpoint(self, endpoint_type: str, desired: Mapping[str, Any], **extra: Any) -> str:
        """Made once (`Context.create_once`): after a lost answer, the endpoint of this service
        in this VPC, tagged with this key, is adopted; a create tried again keeps the client
        token, so AWS returns what the first attempt made."""
        token = str(uuid.uuid4())

        def create(ec2: Any) -> str:
            return str(
                ec2.create_vpc_endpoint(
                    VpcEndpointType=endpoint_type,
                    VpcId=desired["VpcId"],
                    ServiceName=desired["ServiceName"],
                    ClientToken=token,
                    TagSpecifications=self.tag_specs(desired["Tags"]),
                    **extra,
                )["VpcEndpoint"]["VpcEndpointId"]
            )

        def made() -> str | None:
            found = (
                e["VpcEndpointId"]
                for e in self.live(endpoint_type)
                if e["ServiceName"] == desired["ServiceName"] and e["VpcId"] == desired["VpcId"]
            )
            return next(found, None)

        return self.create_once("ec2", create, made)

    def remove(self, endpoint_ids: list[str]) -> None:
        """Delete endpoints and wait (bounded) until AWS has finished deleting them."""
        if not endpoint_ids:
            return
        self.ec2.delete_vpc_endpoints(VpcEndpointIds=endpoint_ids)

        def gone() -> bool:
            found = self.find("ec2", "describe_vpc_endpoints", VpcEndpointIds=endpoint_ids)
            listed = found["VpcEndpoints"] if found else []
            left = [e for e in listed if e["State"].lower() != "deleted"]
            if left:
                self.ctx.progress(self.key, f"waiting for {len(left)} endpoint(s) to be deleted")
            return not left

        _until(self.ctx, self.key, "deletion of VPC endpoints", gone)


class GatewayEndpoint(Endpoints):
    replace_on = ("VpcId", "ServiceName")

    def __init__(self, ctx: Context, service: str) -> None:
        key = GATEWAY_ENDPOINTS[service]
        name = key.split(":", 1)[1]
        super().__init__(ctx, name, ctx.names.vpc_endpoint(service), (VPC, ROUTE_TABLE))
        self.service = service

    def read(self) -> Observed | None:
        kept, *extras = sorted(self.live("Gateway"), key=lambda e: e["VpcEndpointId"]) or [None]
        if kept is None:
            return None
        return replace(self.observe(kept), extras=tuple(self.observe(e) for e in extras))

    def observe(self, endpoint: dict[str, Any]) -> Observed:
        state = {
            "VpcId": endpoint["VpcId"],
            "ServiceName": endpoint["ServiceName"],
            "RouteTableIds": sorted(endpoint.get("RouteTableIds", [])),
            "PolicyDocument": policy(endpoint.get("PolicyDocument")),
            "Tags": tags_from_list(endpoint.get("Tags")),
        }
        return self.observed(state, {"id": endpoint["VpcEndpointId"]})

    def desired(self, refs: Refs) -> dict[str, Any]:
        return {
            "VpcId": refs(VPC, "id"),
            "ServiceName": self.service_name(self.service),
            "RouteTableIds": [refs(ROUTE_TABLE, "id")],
            "PolicyDocument": policy(gateway_policy(self.ctx, self.service)),
            "Tags": self.tags,
        }

    def create(self, desired: dict[str, Any]) -> Outputs:
        endpoint_id = self.create_endpoint(
            "Gateway",
            desired,
            RouteTableIds=desired["RouteTableIds"],
            PolicyDocument=json.dumps(desired["PolicyDocument"]),
        )
        return {"id": endpoint_id}

    def change(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> None:
        params: dict[str, Any] = {}
        if changes.touches("RouteTableIds"):
            params |= _membership(
                observed.state["RouteTableIds"],
                desired["RouteTableIds"],
                "AddRouteTableIds",
                "RemoveRouteTableIds",
            )
        if changes.touches("PolicyDocument"):
            params["PolicyDocument"] = json.dumps(desired["PolicyDocument"])
        if params:
            self.ec2.modify_vpc_endpoint(VpcEndpointId=observed.outputs["id"], **params)

    def delete(self, observed: Observed) -> None:
        self.remove([observed.outputs["id"]])


def _slug(service: str) -> str:
    return service.replace(".", "-")


class InterfaceEndpoints(Endpoints):
    """Every interface endpoint of the spec's list as one resource, so that a service dropped
    from the list is seen (a live entry not desired) and its endpoint deleted."""

    # Each endpoint has its own tags (`Endpoints.<slug>.Tags`), synced in `_modify`.
    tagging: ClassVar[str | None] = None

    def __init__(self, ctx: Context) -> None:
        subnets = tuple(subnet_keys(ctx.spec))
        super().__init__(
            ctx,
            INTERFACE_ENDPOINTS.split(":", 1)[1],
            ctx.names.vpc_endpoint("interface"),
            depends_on=(VPC, *subnets, SG_ENDPOINTS),
        )
        self.subnets = subnets

    def read(self) -> Observed | None:
        found = self.live("Interface")
        if not found:
            return None
        prefix = self.service_name("")
        endpoints, ids = {}, {}
        for endpoint in found:
            slug = _slug(endpoint["ServiceName"].removeprefix(prefix))
            ids[slug] = endpoint["VpcEndpointId"]
            endpoints[slug] = {
                "VpcId": endpoint["VpcId"],
                "ServiceName": endpoint["ServiceName"],
                "SubnetIds": sorted(endpoint.get("SubnetIds", [])),
                "SecurityGroupIds": sorted(g["GroupId"] for g in endpoint.get("Groups", [])),
                "PrivateDnsEnabled": endpoint.get("PrivateDnsEnabled", False),
                "PolicyDocument": policy(endpoint.get("PolicyDocument")),
                "Tags": tags_from_list(endpoint.get("Tags")),
            }
        return Observed({"Endpoints": endpoints}, {"ids": ids})

    def desired(self, refs: Refs) -> dict[str, Any]:
        subnet_ids = [refs(key, "id") for key in self.subnets]
        if all(isinstance(s, str) for s in subnet_ids):
            subnet_ids = sorted(subnet_ids)
        return {
            "Endpoints": {
                _slug(service): {
                    "VpcId": refs(VPC, "id"),
                    "ServiceName": self.service_name(service),
                    "SubnetIds": subnet_ids,
                    "SecurityGroupIds": [refs(SG_ENDPOINTS, "id")],
                    "PrivateDnsEnabled": True,
                    "PolicyDocument": policy(interface_policy(self.ctx, service)),
                    "Tags": self.named(self.ctx.names.vpc_endpoint(service)),
                }
                for service in self.ctx.spec.network.interface_endpoints
            }
        }

    def diff(self, current: Mapping[str, Any], desired: Mapping[str, Any]) -> Diff:
        live, wanted = current["Endpoints"], desired["Endpoints"]
        found = diff(current, desired, exact=[f"Endpoints.{s}.Tags" for s in wanted])
        dropped = [Change(f"Endpoints.{s}", live[s], None) for s in sorted(set(live) - set(wanted))]
        return Diff(found.changes + tuple(dropped))

    def create(self, desired: dict[str, Any]) -> Outputs:
        return {"ids": {slug: self._create(e) for slug, e in desired["Endpoints"].items()}}

    def _create(self, endpoint: Mapping[str, Any]) -> str:
        return self.create_endpoint(
            "Interface",
            endpoint,
            SubnetIds=endpoint["SubnetIds"],
            SecurityGroupIds=endpoint["SecurityGroupIds"],
            PrivateDnsEnabled=endpoint["PrivateDnsEnabled"],
            PolicyDocument=json.dumps(endpoint["PolicyDocument"]),
        )

    def update(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> Outputs:
        ids = dict(observed.outputs["ids"])
        live, wanted = observed.state["Endpoints"], desired["Endpoints"]
        touched = [s for s in sorted(set(live) | set(wanted)) if changes.touches(f"Endpoints.{s}")]
        # An endpoint cannot move to another VPC: it is deleted and created again.
        gone = [
            s
            for s in touched
            if s not in wanted or (s in live and live[s]["VpcId"] != wanted[s]["VpcId"])
        ]
        self.remove([ids.pop(s) for s in gone])
        for slug in touched:
            if slug not in wanted:
                continue
            if slug not in ids:
                ids[slug] = self._create(wanted[slug])
            else:
                self._modify(ids[slug], live[slug], wanted[slug])
        return {"ids": ids}

    def _modify(self, endpoint_id: str, live: Mapping[str, Any], want: Mapping[str, Any]) -> None:
        params = {
            **_membership(live["SubnetIds"], want["SubnetIds"], "AddSubnetIds", "RemoveSubnetIds"),
            **_membership(
                live["SecurityGroupIds"],
                want["SecurityGroupIds"],
                "AddSecurityGroupIds",
                "RemoveSecurityGroupIds",
            ),
        }
        if live["PrivateDnsEnabled"] != want["PrivateDnsEnabled"]:
            params["PrivateDnsEnabled"] = want["PrivateDnsEnabled"]
        if live["PolicyDocument"] != want["PolicyDocument"]:
            params["PolicyDocument"] = json.dumps(want["PolicyDocument"])
        if params:
            self.ec2.modify_vpc_endpoint(VpcEndpointId=endpoint_id, **params)
        if live["Tags"] != want["Tags"]:
            sync_tags(self.ec2, endpoint_id, live["Tags"], want["Tags"])

    def delete(self, observed: Observed) -> None:
        self.remove(sorted(observed.outputs["ids"].values()))

    def warnings(self) -> list[str]:
        listed = self.ctx.spec.network.interface_endpoints
        return [
            f"network.interface_endpoints has no {service}: {why} and cannot reach it from the "
            "isolated subnets"
            for service, why in NEEDED.items()
            if service not in listed
        ]
