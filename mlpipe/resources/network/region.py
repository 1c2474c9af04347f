"""Facts of the region the network depends on: its availability zones and the AWS-managed
prefix lists of the gateway endpoint services. Read once by the `Region` the network's
resources of one run share, and only when a desired state needs them."""

from __future__ import annotations

import ipaddress
import itertools
import threading
from collections.abc import Callable
from typing import Any

from mlpipe.core.context import Context
from mlpipe.core.errors import MlpipeError
from mlpipe.spec import Spec


class Region:
    """The region's facts, each read on first use and kept for the resources sharing this."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._facts: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _fact(self, name: str, read: Callable[[], Any]) -> Any:
        with self._lock:
            if name not in self._facts:
                self._facts[name] = read()
            return self._facts[name]

    def zones(self) -> list[str]:
        """The first `availability_zones` available zones of the region, in name order."""
        ctx = self.ctx
        wanted = ctx.spec.network.availability_zones

        def read() -> list[str]:
            found = ctx.aws.client("ec2").describe_availability_zones(
                Filters=[
                    {"Name": "zone-type", "Values": ["availability-zone"]},
                    {"Name": "state", "Values": ["available"]},
                ]
            )["AvailabilityZones"]
            return sorted(z["ZoneName"] for z in found)

        names = self._fact("zones", read)
        if len(names) < wanted:
            raise MlpipeError(
                f"network.availability_zones is {wanted} but {ctx.aws.region} has {len(names)} "
                "available zones: lower it"
            )
        return list(names[:wanted])

    def prefix_list(self, service: str) -> str:
        """Id of the AWS-managed prefix list of a gateway endpoint service (s3, dynamodb)."""
        ctx = self.ctx
        name = f"com.amazonaws.{ctx.aws.region}.{service}"

        def read() -> dict[str, str]:
            found = ctx.aws.client("ec2").describe_prefix_lists()["PrefixLists"]
            return {p["PrefixListName"]: p["PrefixListId"] for p in found}

        lists = self._fact("prefix-lists", read)
        if name not in lists:
            raise MlpipeError(f"no AWS-managed prefix list {name} in {ctx.aws.region}")
        return str(lists[name])


def subnet_cidrs(spec: Spec) -> list[str]:
    net = spec.network
    blocks = ipaddress.ip_network(net.cidr).subnets(new_prefix=net.subnet_prefix_length)
    return [str(block) for block in itertools.islice(blocks, net.availability_zones)]
