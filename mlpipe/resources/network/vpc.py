"""The VPC, its private subnets (one per availability zone, no public IPs) and their route
table, which has no way out but the routes of the gateway endpoints."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from functools import partial
from typing import Any, ClassVar

from mlpipe.core.context import Context
from mlpipe.core.diff import Diff, tags_from_list
from mlpipe.core.find import forget
from mlpipe.core.resource import Observed, Outputs, Refs
from mlpipe.core.wait import wait_for
from mlpipe.resources.network.common import VPC, Ec2, _delete, _sorted, subnet_keys
from mlpipe.resources.network.region import Region, subnet_cidrs


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
        vpc = self.create_tagged("create_vpc", "Vpc", desired, "CidrBlock")
        self._available(vpc["VpcId"])
        self._set_attributes(vpc["VpcId"], desired, None)
        return {"id": vpc["VpcId"]}

    def _available(self, vpc_id: str) -> None:
        """Wait until the new VPC is `available` (EC2 may not list it at once)."""

        def refresh() -> tuple[None, str]:
            found = self.find("ec2", "describe_vpcs", VpcIds=[vpc_id])
            return None, found["Vpcs"][0]["State"] if found else "not listed yet"

        wait_for(
            refresh,
            pending=("pending", "not listed yet"),
            target=("available",),
            timeout=self.ctx.consistency_timeout,
            clock=self.ctx.clock,
            what=f"{self.key} {vpc_id}",
        )

    def _set_attributes(self, vpc_id: str, desired: dict[str, Any], changes: Diff | None) -> None:
        for attribute in self.ATTRIBUTES:  # one attribute per call, as EC2 requires
            if changes is None or changes.touches(attribute):
                self.ec2.modify_vpc_attribute(
                    VpcId=vpc_id, **{attribute: {"Value": desired[attribute]}}
                )

    def change(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> None:
        self._set_attributes(observed.outputs["id"], desired, changes)

    def delete(self, observed: Observed) -> None:
        vpc_id = observed.outputs["id"]
        delete = partial(forget, self.ec2, "delete_vpc", VpcId=vpc_id)
        _delete(self.ctx, self.key, delete, {"vpc-id": vpc_id})


class Subnet(Ec2):
    resource_type = "subnet"
    describe, listed, id_field = "describe_subnets", "Subnets", "SubnetId"
    replace_on = ("VpcId", "CidrBlock", "AvailabilityZone")

    def __init__(self, ctx: Context, index: int, region: Region) -> None:
        super().__init__(ctx, f"subnet-{index}", ctx.names.subnet(index), depends_on=(VPC,))
        self.index = index
        self.region = region

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
            "AvailabilityZone": self.region.zones()[self.index],
            "MapPublicIpOnLaunch": False,
            "Tags": self.tags,
        }

    def create(self, desired: dict[str, Any]) -> Outputs:
        subnet = self.create_tagged(
            "create_subnet", "Subnet", desired, "VpcId", "CidrBlock", "AvailabilityZone"
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
        subnet_id = observed.outputs["id"]
        delete = partial(forget, self.ec2, "delete_subnet", SubnetId=subnet_id)
        _delete(self.ctx, self.key, delete, {"subnet-id": subnet_id})


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
        found = self.find("ec2", "describe_route_tables", RouteTableIds=[table_id])
        tables = found["RouteTables"] if found else []
        return [a for t in tables for a in t["Associations"] if "SubnetId" in a]

    def delete(self, observed: Observed) -> None:
        table_id = observed.outputs["id"]
        for association in self._associations(table_id):
            self.ec2.disassociate_route_table(AssociationId=association["RouteTableAssociationId"])
        _delete(
            self.ctx,
            self.key,
            lambda: forget(self.ec2, "delete_route_table", RouteTableId=table_id),
        )
