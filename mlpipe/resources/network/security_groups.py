"""Security groups: the pipeline's (HTTPS to the VPC endpoints only, or from the groups that
use them) and the VPC's default group, emptied of its rules. Rules are compared flat, one per
peer, whatever shape EC2 grouped them in."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from mlpipe.core.context import Context
from mlpipe.core.diff import Diff, tags_from_list
from mlpipe.core.find import forget
from mlpipe.core.resource import Observed, Outputs, Refs
from mlpipe.core.tagging import sync_tags
from mlpipe.resources.network.common import GATEWAY_ENDPOINTS, VPC, Ec2, _delete, _sorted
from mlpipe.resources.network.region import Region
from mlpipe.resources.network.vpc import Vpc

HTTPS = {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443}
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


def observe_group(resource: Ec2, group: Mapping[str, Any], *fields: str) -> Observed:
    """A live group as `resource` sees it: its VPC, `fields`, flat rules and tags."""
    state = {
        "VpcId": group["VpcId"],
        **{name: group[name] for name in fields},
        "Ingress": rules(group["IpPermissions"]),
        "Egress": rules(group["IpPermissionsEgress"]),
        "Tags": tags_from_list(group.get("Tags")),
    }
    return resource.observed(state, {"id": group["GroupId"]})


class SecurityGroup(Ec2):
    resource_type = "security-group"
    describe, listed, id_field = "describe_security_groups", "SecurityGroups", "GroupId"
    replace_on = ("VpcId", "GroupName", "Description")

    def __init__(
        self,
        ctx: Context,
        region: Region,
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
        self.region = region
        self.description = description
        self.ingress_from = ingress_from
        # HTTPS egress to the VPC's interface endpoints ("vpc") and gateway services.
        self.egress_to = () if ingress_from else egress_to

    def observe(self, group: dict[str, Any]) -> Observed:
        return observe_group(self, group, "GroupName", "Description")

    def desired(self, refs: Refs) -> dict[str, Any]:
        ingress = [{**HTTPS, "GroupId": refs(key, "id")} for key in self.ingress_from]
        # Interface endpoints sit in the VPC; S3 and DynamoDB are reached through gateways.
        egress = [
            {**HTTPS, "CidrIp": self.ctx.spec.network.cidr}
            if to == "vpc"
            else {**HTTPS, "PrefixListId": self.region.prefix_list(to)}
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
        made = self.create_tagged(
            "create_security_group", "", desired, "GroupName", "Description", "VpcId"
        )
        group_id = made["GroupId"]
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
        _delete(
            self.ctx,
            self.key,
            lambda: forget(self.ec2, "delete_security_group", GroupId=group_id),
            {"group-id": group_id},
        )


class DefaultSecurityGroup(Ec2):
    """The VPC's default security group, which every VPC has and nothing here uses: emptied of
    its rules (AWS FSBP EC2.2), tagged, and left to go with the VPC (it cannot be deleted)."""

    resource_type = "security-group"
    replace_on = ("VpcId",)

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, "default-sg", ctx.names.security_group("default"), (VPC,))

    def read(self) -> Observed | None:
        vpc = Vpc(self.ctx).kept()
        if vpc is None:
            return None
        return observe_group(self, self._group(vpc["VpcId"]))

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
        sync_tags(self.ec2, group_id, tags_from_list(group.get("Tags")), desired["Tags"])
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
