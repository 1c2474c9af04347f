"""The pipeline's network: an isolated VPC that reaches AWS only through VPC endpoints.

Private subnets in the first N availability zones, one route table with no way out but the
gateway endpoints (S3, DynamoDB), interface endpoints for the APIs the handlers call, and
security groups whose egress is HTTPS to those endpoints only. EC2 resources have no name of
their own: each is found by its `mlpipe:pipeline` + `mlpipe:resource` tags.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import threading
import uuid
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any, ClassVar

from mlpipe.core.clients import Aws
from mlpipe.core.context import OWNER_TAG, RESOURCE_TAG, Context
from mlpipe.core.diff import Change, Diff, diff, policy, sync_tags, tags_from_list, tags_to_list
from mlpipe.core.errors import MlpipeError, error_code, is_not_found
from mlpipe.core.resource import Observed, Outputs, Refs, Resource
from mlpipe.core.wait import Pending, TimedOut, poll
from mlpipe.naming import Arns
from mlpipe.spec import Spec

VPC = "ec2:vpc"
ROUTE_TABLE = "ec2:private-routes"
SG_LAMBDA = "ec2:sg-lambda"
SG_BATCH = "ec2:sg-batch"
SG_ENDPOINTS = "ec2:sg-endpoints"
SG_SAGEMAKER = "ec2:sg-sagemaker"
GATEWAY_ENDPOINTS = {"s3": "ec2:endpoint-s3", "dynamodb": "ec2:endpoint-dynamodb"}
INTERFACE_ENDPOINTS = "ec2:interface-endpoints"
DEFAULT_SG = "ec2:default-sg"

HTTPS = {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443}
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


def subnet_keys(spec: Spec) -> list[str]:
    """Keys of the private subnets, one per availability zone; outputs {"id", "az"}."""
    return [f"ec2:subnet-{i}" for i in range(spec.network.availability_zones)]


# Region facts read once per run (per client factory): zones and AWS-managed prefix lists.
_facts: weakref.WeakKeyDictionary[Aws, dict[str, Any]] = weakref.WeakKeyDictionary()
_facts_lock = threading.Lock()


def _fact(aws: Aws, name: str, read: Callable[[], Any]) -> Any:
    with _facts_lock:
        facts = _facts.setdefault(aws, {})
        if name not in facts:
            facts[name] = read()
        return facts[name]


def zones(ctx: Context) -> list[str]:
    """The first `availability_zones` available zones of the region, in name order."""
    wanted = ctx.spec.network.availability_zones

    def read() -> list[str]:
        found = ctx.aws.client("ec2").describe_availability_zones(
            Filters=[
                {"Name": "zone-type", "Values": ["availability-zone"]},
                {"Name": "state", "Values": ["available"]},
            ]
        )["AvailabilityZones"]
        return sorted(z["ZoneName"] for z in found)

    names = _fact(ctx.aws, "zones", read)
    if len(names) < wanted:
        raise MlpipeError(
            f"network.availability_zones is {wanted} but {ctx.aws.region} has {len(names)} "
            "available zones: lower it"
        )
    return names[:wanted]


def prefix_list(ctx: Context, service: str) -> str:
    """Id of the AWS-managed prefix list of a gateway endpoint service (s3, dynamodb)."""
    name = f"com.amazonaws.{ctx.aws.region}.{service}"

    def read() -> dict[str, str]:
        found = ctx.aws.client("ec2").describe_prefix_lists()["PrefixLists"]
        return {p["PrefixListName"]: p["PrefixListId"] for p in found}

    lists = _fact(ctx.aws, "prefix-lists", read)
    if name not in lists:
        raise MlpipeError(f"no AWS-managed prefix list {name} in {ctx.aws.region}")
    return str(lists[name])


def subnet_cidrs(spec: Spec) -> list[str]:
    net = spec.network
    blocks = ipaddress.ip_network(net.cidr).subnets(new_prefix=net.subnet_prefix_length)
    return [str(block) for block in itertools.islice(blocks, net.availability_zones)]


def _membership(live: Iterable[str], want: Iterable[str], add: str, remove: str) -> dict[str, Any]:
    """`{add: [...], remove: [...]}` for a Modify call, leaving out empty lists."""
    live, want = set(live), set(want)
    found = {add: sorted(want - live), remove: sorted(live - want)}
    return {k: v for k, v in found.items() if v}


def _sorted(items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return sorted(
        (dict(i) for i in items), key=lambda i: json.dumps(i, sort_keys=True, default=str)
    )


class Ec2(Resource):
    """An EC2 resource found by its tags, tagged at create with a Name."""

    kind = "ec2"
    resource_type: ClassVar[str]
    # How to list the instances tagged with the key: call, list field, id field.
    describe: ClassVar[str]
    listed: ClassVar[str]
    id_field: ClassVar[str]

    @property
    def ec2(self) -> Any:
        return self.client("ec2")

    @property
    def tags(self) -> dict[str, str]:
        return self.named(self.physical)

    def named(self, name: str) -> dict[str, str]:
        return {**self.ctx.tags_for(self.key), "Name": name}

    def tag_filters(self) -> list[dict[str, Any]]:
        return [
            {"Name": f"tag:{OWNER_TAG}", "Values": [self.ctx.names.pipeline_id]},
            {"Name": f"tag:{RESOURCE_TAG}", "Values": [self.key]},
        ]

    def tag_specs(self, tags: Mapping[str, str]) -> list[dict[str, Any]]:
        return [{"ResourceType": self.resource_type, "Tags": tags_to_list(tags)}]

    def tagged(self) -> list[dict[str, Any]]:
        """Every live instance tagged with this key, the one to keep first: the one in the
        VPC kept (see `kept_vpc`), else the lowest id."""
        found = getattr(self.ec2, self.describe)(Filters=self.tag_filters())[self.listed]
        if len(found) < 2:
            return list(found)
        vpc = self.kept_vpc()
        return sorted(found, key=lambda i: (i.get("VpcId") != vpc, i[self.id_field]))

    def kept_vpc(self) -> str | None:
        """Of the VPCs a crash or race left, the one kept: the one holding most of the
        pipeline's subnets, then the lowest id."""
        owner = [{"Name": f"tag:{OWNER_TAG}", "Values": [self.ctx.names.pipeline_id]}]
        vpcs = self.ec2.describe_vpcs(
            Filters=[*owner, {"Name": f"tag:{RESOURCE_TAG}", "Values": [VPC]}]
        )["Vpcs"]
        subnets = self.ec2.describe_subnets(Filters=owner)["Subnets"]
        held = Counter(s["VpcId"] for s in subnets)
        return min((v["VpcId"] for v in vpcs), key=lambda v: (-held[v], v), default=None)

    def find(self) -> dict[str, Any] | None:
        """The live instance to keep, or None."""
        found = self.tagged()
        return found[0] if found else None

    def observe(self, item: dict[str, Any]) -> Observed:
        raise NotImplementedError

    def read(self) -> Observed | None:
        kept, *extras = self.tagged() or [None]
        if kept is None:
            return None
        return replace(self.observe(kept), extras=tuple(self.observe(e) for e in extras))

    def create_tagged(self, call: str, field: str, **params: Any) -> dict[str, Any]:
        """Create with the creation tags; made once (`Context.create_once`)."""

        def create(ec2: Any) -> dict[str, Any]:
            tags = self.tag_specs(self.ctx.creation_tags(self.tags))
            answer = getattr(ec2, call)(**params, TagSpecifications=tags)
            return dict(answer[field]) if field else dict(answer)

        return self.create_once("ec2", create, self.find)

    def sync_tags(
        self, resource_id: str, current: Mapping[str, str], desired: Mapping[str, str]
    ) -> None:
        sync_tags(
            current,
            desired,
            lambda tags: self.ec2.create_tags(Resources=[resource_id], Tags=tags_to_list(tags)),
            lambda keys: self.ec2.delete_tags(
                Resources=[resource_id], Tags=[{"Key": k} for k in keys]
            ),
        )

    def change(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> None:
        """Apply the changes other than tags."""

    def update(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> Outputs:
        self.change(observed, desired, changes)
        if changes.touches("Tags"):
            self.sync_tags(observed.outputs["id"], observed.state["Tags"], desired["Tags"])
        return observed.outputs

    def observed(self, state: dict[str, Any], outputs: Outputs) -> Observed:
        return Observed(state, outputs, self.ctx.owns(state["Tags"]))


class Vpc(Ec2):
    resource_type = "vpc"
    describe, listed, id_field = "describe_vpcs", "Vpcs", "VpcId"
    replace_on = ("CidrBlock",)
    ATTRIBUTES: ClassVar[tuple[str, ...]] = ("EnableDnsSupport", "EnableDnsHostnames")

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, "vpc", ctx.names.vpc)

    def observe(self, vpc: dict[str, Any]) -> Observed:
        vpc_id = vpc["VpcId"]
        state = {"CidrBlock": vpc["CidrBlock"], "Tags": tags_from_list(vpc.get("Tags"))}
        for attribute in self.ATTRIBUTES:
            name = attribute[0].lower() + attribute[1:]
            answer = self.ec2.describe_vpc_attribute(VpcId=vpc_id, Attribute=name)
            state[attribute] = answer[attribute]["Value"]
        return self.observed(state, {"id": vpc_id})

    def desired(self, refs: Refs) -> dict[str, Any]:
        return {
            "CidrBlock": self.ctx.spec.network.cidr,
            "EnableDnsSupport": True,
            "EnableDnsHostnames": True,
            "Tags": self.tags,
        }

    def create(self, desired: dict[str, Any]) -> Outputs:
        vpc = self.create_tagged("create_vpc", "Vpc", CidrBlock=desired["CidrBlock"])
        self.ec2.get_waiter("vpc_available").wait(VpcIds=[vpc["VpcId"]])
        self._set_attributes(vpc["VpcId"], desired, None)
        return {"id": vpc["VpcId"]}

    def _set_attributes(self, vpc_id: str, desired: dict[str, Any], changes: Diff | None) -> None:
        for attribute in self.ATTRIBUTES:  # one attribute per call, as EC2 requires
            if changes is None or changes.touches(attribute):
                self.ec2.modify_vpc_attribute(
                    VpcId=vpc_id, **{attribute: {"Value": desired[attribute]}}
                )

    def change(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> None:
        self._set_attributes(observed.outputs["id"], desired, changes)

    def delete(self, observed: Observed) -> None:
        _delete(self.ctx, self.key, lambda: self.ec2.delete_vpc(VpcId=observed.outputs["id"]))


class Subnet(Ec2):
    resource_type = "subnet"
    describe, listed, id_field = "describe_subnets", "Subnets", "SubnetId"
    replace_on = ("VpcId", "CidrBlock", "AvailabilityZone")

    def __init__(self, ctx: Context, index: int) -> None:
        super().__init__(ctx, f"subnet-{index}", ctx.names.subnet(index), depends_on=(VPC,))
        self.index = index

    def observe(self, subnet: dict[str, Any]) -> Observed:
        state = {
            "VpcId": subnet["VpcId"],
            "CidrBlock": subnet["CidrBlock"],
            "AvailabilityZone": subnet["AvailabilityZone"],
            "MapPublicIpOnLaunch": subnet["MapPublicIpOnLaunch"],
            "Tags": tags_from_list(subnet.get("Tags")),
        }
        return self.observed(state, {"id": subnet["SubnetId"], "az": subnet["AvailabilityZone"]})

    def desired(self, refs: Refs) -> dict[str, Any]:
        return {
            "VpcId": refs(VPC, "id"),
            "CidrBlock": subnet_cidrs(self.ctx.spec)[self.index],
            "AvailabilityZone": zones(self.ctx)[self.index],
            "MapPublicIpOnLaunch": False,
            "Tags": self.tags,
        }

    def create(self, desired: dict[str, Any]) -> Outputs:
        subnet = self.create_tagged(
            "create_subnet",
            "Subnet",
            VpcId=desired["VpcId"],
            CidrBlock=desired["CidrBlock"],
            AvailabilityZone=desired["AvailabilityZone"],
        )
        if subnet["MapPublicIpOnLaunch"] != desired["MapPublicIpOnLaunch"]:
            self._set_public_ip(subnet["SubnetId"], desired["MapPublicIpOnLaunch"])
        return {"id": subnet["SubnetId"], "az": subnet["AvailabilityZone"]}

    def _set_public_ip(self, subnet_id: str, value: bool) -> None:
        self.ec2.modify_subnet_attribute(SubnetId=subnet_id, MapPublicIpOnLaunch={"Value": value})

    def change(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> None:
        if changes.touches("MapPublicIpOnLaunch"):
            self._set_public_ip(observed.outputs["id"], desired["MapPublicIpOnLaunch"])

    def delete(self, observed: Observed) -> None:
        _delete(self.ctx, self.key, lambda: self.ec2.delete_subnet(SubnetId=observed.outputs["id"]))


def _until(ctx: Context, key: str, what: str, done: Callable[[], bool]) -> None:
    """Poll `done` until it is true, bounded by network.delete_timeout_seconds."""
    timeout = ctx.spec.network.delete_timeout_seconds

    def attempt() -> bool | Pending:
        return True if done() else Pending(None, f"{key}: {what} not done")

    try:
        poll(attempt, timeout=timeout, clock=ctx.clock)
    except TimedOut as exc:
        raise MlpipeError(
            f"{key}: {what} not done within {timeout}s (network.delete_timeout_seconds); "
            "run the command again later"
        ) from exc


def _delete(ctx: Context, key: str, call: Callable[[], Any]) -> None:
    """Delete; not found is success. Network interfaces of deleted endpoints and Lambdas
    outlive them for a while (DependencyViolation): wait for them, bounded."""

    def attempt() -> bool:
        try:
            call()
        except Exception as exc:
            if is_not_found(exc):
                return True
            if error_code(exc) != "DependencyViolation":
                raise
            ctx.progress(key, "waiting for network interfaces in use to be released")
            return False
        return True

    _until(ctx, key, "deletion", attempt)


def _foreign_routes(routes: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Routes neither local nor a gateway endpoint's: a way out of the isolated subnets."""
    found = []
    for route in routes:
        if route.get("GatewayId") == "local" or route.get("GatewayId", "").startswith("vpce-"):
            continue
        found.append({k: v for k, v in route.items() if k not in ("Origin", "State")})
    return _sorted(found)


class RouteTable(Ec2):
    resource_type = "route-table"
    describe, listed, id_field = "describe_route_tables", "RouteTables", "RouteTableId"
    replace_on = ("VpcId",)

    def __init__(self, ctx: Context) -> None:
        subnets = tuple(subnet_keys(ctx.spec))
        super().__init__(
            ctx, "private-routes", ctx.names.private_route_table, depends_on=(VPC, *subnets)
        )
        self.subnets = subnets

    def observe(self, table: dict[str, Any]) -> Observed:
        state = {
            "VpcId": table["VpcId"],
            "SubnetIds": sorted(a["SubnetId"] for a in table["Associations"] if "SubnetId" in a),
            "ExtraRoutes": _foreign_routes(table["Routes"]),
            "Tags": tags_from_list(table.get("Tags")),
        }
        return self.observed(state, {"id": table["RouteTableId"]})

    def desired(self, refs: Refs) -> dict[str, Any]:
        subnet_ids = [refs(key, "id") for key in self.subnets]
        known = all(isinstance(s, str) for s in subnet_ids)
        return {
            "VpcId": refs(VPC, "id"),
            "SubnetIds": sorted(subnet_ids) if known else subnet_ids,
            "ExtraRoutes": [],
            "Tags": self.tags,
        }

    def create(self, desired: dict[str, Any]) -> Outputs:
        table = self.ec2.create_route_table(
            VpcId=desired["VpcId"],
            ClientToken=str(uuid.uuid4()),
            TagSpecifications=self.tag_specs(desired["Tags"]),
        )["RouteTable"]
        for subnet_id in desired["SubnetIds"]:
            self.ec2.associate_route_table(RouteTableId=table["RouteTableId"], SubnetId=subnet_id)
        return {"id": table["RouteTableId"]}

    def change(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> None:
        table_id = observed.outputs["id"]
        if changes.touches("SubnetIds"):
            associations = self._associations(table_id)
            live = {a["SubnetId"]: a["RouteTableAssociationId"] for a in associations}
            for subnet_id in sorted(set(desired["SubnetIds"]) - set(live)):
                self.ec2.associate_route_table(RouteTableId=table_id, SubnetId=subnet_id)
            for subnet_id in sorted(set(live) - set(desired["SubnetIds"])):
                self.ec2.disassociate_route_table(AssociationId=live[subnet_id])
        if changes.touches("ExtraRoutes"):
            for route in observed.state["ExtraRoutes"]:
                destination = {k: v for k, v in route.items() if k.startswith("Destination")}
                self.ec2.delete_route(RouteTableId=table_id, **destination)

    def _associations(self, table_id: str) -> list[dict[str, Any]]:
        try:
            tables = self.ec2.describe_route_tables(RouteTableIds=[table_id])["RouteTables"]
        except Exception as exc:
            if is_not_found(exc):
                return []
            raise
        return [a for t in tables for a in t["Associations"] if "SubnetId" in a]

    def delete(self, observed: Observed) -> None:
        table_id = observed.outputs["id"]
        for association in self._associations(table_id):
            self.ec2.disassociate_route_table(AssociationId=association["RouteTableAssociationId"])
        _delete(self.ctx, self.key, lambda: self.ec2.delete_route_table(RouteTableId=table_id))


PEERS = {
    "CidrIp": "IpRanges",
    "CidrIpv6": "Ipv6Ranges",
    "PrefixListId": "PrefixListIds",
    "GroupId": "UserIdGroupPairs",
}


def rules(items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """IpPermissions flattened to one rule per peer: protocol, ports and one peer, sorted."""
    found = []
    for permission in items:
        base = {"IpProtocol": permission["IpProtocol"]}
        if permission["IpProtocol"] != "-1":
            base |= {"FromPort": permission["FromPort"], "ToPort": permission["ToPort"]}
        for peer, field in PEERS.items():
            found += [{**base, peer: item[peer]} for item in permission.get(field, [])]
    return _sorted(found)


def permissions(flat: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Flattened rules back in IpPermissions shape, one permission per rule."""
    out = []
    for rule in flat:
        peer = next(p for p in PEERS if p in rule)
        permission = {k: v for k, v in rule.items() if k != peer}
        out.append({**permission, PEERS[peer]: [{peer: rule[peer]}]})
    return out


class SecurityGroup(Ec2):
    resource_type = "security-group"
    describe, listed, id_field = "describe_security_groups", "SecurityGroups", "GroupId"
    replace_on = ("VpcId", "GroupName", "Description")

    def __init__(
        self,
        ctx: Context,
        purpose: str,
        description: str,
        ingress_from: tuple[str, ...] = (),
        egress_to: tuple[str, ...] = ("vpc", *GATEWAY_ENDPOINTS),
    ) -> None:
        super().__init__(
            ctx,
            f"sg-{purpose}",
            ctx.names.security_group(purpose),
            depends_on=(VPC, *ingress_from),
        )
        self.description = description
        self.ingress_from = ingress_from
        # HTTPS egress to the VPC's interface endpoints ("vpc") and gateway services.
        self.egress_to = () if ingress_from else egress_to

    def observe(self, group: dict[str, Any]) -> Observed:
        state = {
            "VpcId": group["VpcId"],
            "GroupName": group["GroupName"],
            "Description": group["Description"],
            "Ingress": rules(group["IpPermissions"]),
            "Egress": rules(group["IpPermissionsEgress"]),
            "Tags": tags_from_list(group.get("Tags")),
        }
        return self.observed(state, {"id": group["GroupId"]})

    def desired(self, refs: Refs) -> dict[str, Any]:
        ingress = [{**HTTPS, "GroupId": refs(key, "id")} for key in self.ingress_from]
        # Interface endpoints sit in the VPC; S3 and DynamoDB are reached through gateways.
        egress = [
            {**HTTPS, "CidrIp": self.ctx.spec.network.cidr}
            if to == "vpc"
            else {**HTTPS, "PrefixListId": prefix_list(self.ctx, to)}
            for to in self.egress_to
        ]
        return {
            "VpcId": refs(VPC, "id"),
            "GroupName": self.physical,
            "Description": self.description,
            "Ingress": _sorted(ingress),
            "Egress": _sorted(egress),
            "Tags": self.tags,
        }

    def create(self, desired: dict[str, Any]) -> Outputs:
        group_id = self.create_tagged(
            "create_security_group",
            "",
            GroupName=desired["GroupName"],
            Description=desired["Description"],
            VpcId=desired["VpcId"],
        )["GroupId"]
        created = self.ctx.eventually(
            lambda: self.ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0],
            "ec2-group-not-visible",
        )
        self._sync_rules(group_id, rules(created["IpPermissions"]), desired["Ingress"], False)
        self._sync_rules(group_id, rules(created["IpPermissionsEgress"]), desired["Egress"], True)
        return {"id": group_id}

    def _sync_rules(
        self,
        group_id: str,
        current: list[dict[str, Any]],
        desired: list[dict[str, Any]],
        egress: bool,
    ) -> None:
        """Authorize the missing rules first, then revoke the stale ones."""
        new = [r for r in desired if r not in current]
        stale = [r for r in current if r not in desired]
        direction = "egress" if egress else "ingress"
        if new:
            authorize = getattr(self.ec2, f"authorize_security_group_{direction}")
            authorize(GroupId=group_id, IpPermissions=permissions(new))
        if stale:
            revoke = getattr(self.ec2, f"revoke_security_group_{direction}")
            revoke(GroupId=group_id, IpPermissions=permissions(stale))

    def change(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> None:
        group_id, live = observed.outputs["id"], observed.state
        if changes.touches("Ingress"):
            self._sync_rules(group_id, live["Ingress"], desired["Ingress"], False)
        if changes.touches("Egress"):
            self._sync_rules(group_id, live["Egress"], desired["Egress"], True)

    def delete(self, observed: Observed) -> None:
        group_id = observed.outputs["id"]
        _delete(self.ctx, self.key, lambda: self.ec2.delete_security_group(GroupId=group_id))


class DefaultSecurityGroup(Ec2):
    """The VPC's default security group, which every VPC has and nothing here uses: emptied of
    its rules (AWS FSBP EC2.2), tagged, and left to go with the VPC (it cannot be deleted)."""

    resource_type = "security-group"
    replace_on = ("VpcId",)

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, "default-sg", ctx.names.security_group("default"), (VPC,))

    def read(self) -> Observed | None:
        vpc = Vpc(self.ctx).find()
        if vpc is None:
            return None
        group = self._group(vpc["VpcId"])
        state = {
            "VpcId": group["VpcId"],
            "Ingress": rules(group["IpPermissions"]),
            "Egress": rules(group["IpPermissionsEgress"]),
            "Tags": tags_from_list(group.get("Tags")),
        }
        return self.observed(state, {"id": group["GroupId"]})

    def _group(self, vpc_id: str) -> dict[str, Any]:
        return dict(
            self.ec2.describe_security_groups(
                Filters=[
                    {"Name": "vpc-id", "Values": [vpc_id]},
                    {"Name": "group-name", "Values": ["default"]},
                ]
            )["SecurityGroups"][0]
        )

    def desired(self, refs: Refs) -> dict[str, Any]:
        return {"VpcId": refs(VPC, "id"), "Ingress": [], "Egress": [], "Tags": self.tags}

    def create(self, desired: dict[str, Any]) -> Outputs:
        group = self._group(desired["VpcId"])  # EC2 makes it with the VPC
        group_id = group["GroupId"]
        self.ec2.create_tags(Resources=[group_id], Tags=tags_to_list(desired["Tags"]))
        self._revoke(group_id, rules(group["IpPermissions"]), rules(group["IpPermissionsEgress"]))
        return {"id": group_id}

    def _revoke(self, group_id: str, ingress: list[Any], egress: list[Any]) -> None:
        if ingress:
            self.ec2.revoke_security_group_ingress(
                GroupId=group_id, IpPermissions=permissions(ingress)
            )
        if egress:
            self.ec2.revoke_security_group_egress(
                GroupId=group_id, IpPermissions=permissions(egress)
            )

    def change(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> None:
        self._revoke(observed.outputs["id"], observed.state["Ingress"], observed.state["Egress"])

    def delete(self, observed: Observed) -> None:
        """Nothing to do: the default group is deleted with its VPC."""


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

        def find() -> str | None:
            made = (
                e["VpcEndpointId"]
                for e in self.live(endpoint_type)
                if e["ServiceName"] == desired["ServiceName"] and e["VpcId"] == desired["VpcId"]
            )
            return next(made, None)

        return self.create_once("ec2", create, find)

    def remove(self, endpoint_ids: list[str]) -> None:
        """Delete endpoints and wait (bounded) until AWS has finished deleting them."""
        if not endpoint_ids:
            return
        self.ec2.delete_vpc_endpoints(VpcEndpointIds=endpoint_ids)

        def gone() -> bool:
            try:
                found = self.ec2.describe_vpc_endpoints(VpcEndpointIds=endpoint_ids)
            except Exception as exc:
                if is_not_found(exc):
                    return True
                raise
            left = [e for e in found["VpcEndpoints"] if e["State"].lower() != "deleted"]
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
            "PolicyDocument": policy(self._policy()),
            "Tags": self.tags,
        }

    def _policy(self) -> dict[str, Any]:
        """Only the pipeline's own buckets / table, and only for the account's principals."""
        arns, names = Arns(self.ctx), self.ctx.names
        if self.service == "s3":
            buckets = [names.model_bucket, names.data_bucket]
            statements = [
                account_only(
                    self.ctx,
                    "PipelineBuckets",
                    S3_ACTIONS,
                    [arns.bucket(b) for b in buckets] + [arns.bucket(b, "/*") for b in buckets],
                )
            ]
            if "ecr.dkr" in self.ctx.spec.network.interface_endpoints:
                # ECR serves image layers from this AWS-owned bucket, reached through the
                # gateway with a URL ECR's own account presigned: neither the principal nor the
                # bucket is the pipeline's account (ECR user guide, "Minimum Amazon S3 bucket
                # permissions for Amazon ECR",
                # https://docs.aws.amazon.com/AmazonECR/latest/userguide/vpc-endpoints.html).
                layers = f"prod-{self.ctx.aws.region}-starport-layer-bucket"
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
                    self.ctx,
                    "PredictionsTable",
                    DYNAMODB_ACTIONS,
                    [arns.table, f"{arns.table}/index/*"],
                )
            ]
        return {"Version": "2012-10-17", "Statement": statements}

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
            self.sync_tags(endpoint_id, live["Tags"], want["Tags"])

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


def resources(ctx: Context) -> list[Resource]:
    return [
        Vpc(ctx),
        *(Subnet(ctx, i) for i in range(ctx.spec.network.availability_zones)),
        RouteTable(ctx),
        SecurityGroup(ctx, "lambda", "mlpipe Lambdas: HTTPS to the VPC endpoints only"),
        SecurityGroup(ctx, "batch", "mlpipe Batch jobs: HTTPS to the VPC endpoints only"),
        SecurityGroup(
            ctx,
            "endpoints",
            "mlpipe interface endpoints: HTTPS from the Lambdas and Batch jobs",
            ingress_from=(SG_LAMBDA, SG_BATCH),
        ),
        # With network isolation the model container makes no call; SageMaker fetches the
        # model artifacts through the VPC, from S3 only (its gateway endpoint). Images are
        # pulled by the platform (RepositoryAccessMode Platform), not through the VPC.
        SecurityGroup(
            ctx, "sagemaker", "mlpipe SageMaker models: HTTPS to S3 only", egress_to=("s3",)
        ),
        *(GatewayEndpoint(ctx, service) for service in GATEWAY_ENDPOINTS),
        InterfaceEndpoints(ctx),
        DefaultSecurityGroup(ctx),
    ]
