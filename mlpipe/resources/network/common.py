"""What every network resource shares: the resource keys, the `Ec2` base (found by its tags,
tagged at create, its tags kept in sync by the core) and the bounded wait for deletes that
network interfaces still in use hold up."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any, ClassVar

from botocore.exceptions import ClientError

from mlpipe.core.context import OWNER_TAG, RESOURCE_TAG, Context
from mlpipe.core.diff import Diff, tags_to_list
from mlpipe.core.errors import MlpipeError
from mlpipe.core.find import forget
from mlpipe.core.resource import Observed, Outputs, Resource
from mlpipe.core.transient import BY_NAME
from mlpipe.core.wait import Pending, TimedOut, poll
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
# How Lambda describes the network interfaces it manages for VPC functions.
LAMBDA_ENI = "AWS Lambda VPC ENI-"


def subnet_keys(spec: Spec) -> list[str]:
    """Keys of the private subnets, one per availability zone; outputs {"id", "az"}."""
    return [f"ec2:subnet-{i}" for i in range(spec.network.availability_zones)]


def _sorted(items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return sorted(
        (dict(i) for i in items), key=lambda i: json.dumps(i, sort_keys=True, default=str)
    )


class Ec2(Resource):
    """An EC2 resource found by its tags, tagged at create with a Name."""

    kind = "ec2"
    tagging = "ec2"
    tag_id = "id"
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

    def kept(self) -> dict[str, Any] | None:
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

    def create_tagged(
        self, call: str, field: str, desired: Mapping[str, Any], *names: str
    ) -> dict[str, Any]:
        """`call` with the `names` of `desired` and the creation tags; made once
        (`Context.create_once`). The answer's `field` ("": the whole answer)."""
        params = {name: desired[name] for name in names}

        def create(ec2: Any) -> dict[str, Any]:
            tags = self.tag_specs(self.ctx.creation_tags(self.tags))
            answer = getattr(ec2, call)(**params, TagSpecifications=tags)
            return dict(answer[field]) if field else dict(answer)

        return self.create_once("ec2", create, self.kept)

    def change(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> None:
        """Apply the changes (the core keeps the tags in sync)."""

    def update(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> Outputs:
        self.change(observed, desired, changes)
        return observed.outputs

    def observed(self, state: dict[str, Any], outputs: Outputs) -> Observed:
        return Observed(state, outputs, self.ctx.owns(state["Tags"]))


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


def _delete(
    ctx: Context, key: str, call: Callable[[], Any], held_by: dict[str, str] | None = None
) -> None:
    """Delete (`call`, a `forget`: not found is success). `DependencyViolation` is waited out
    (bounded) only while Lambda network interfaces in `held_by` (a DescribeNetworkInterfaces
    filter) are being released: a transient error by name
    (`ec2-lambda-interfaces-being-released`)."""
    releasing = BY_NAME["ec2-lambda-interfaces-being-released"]

    def attempt() -> bool:
        try:
            call()
        except ClientError as exc:
            if held_by is None or not releasing.matches(exc):
                raise
            if not lambda_interfaces(ctx, held_by):
                call()  # released (or deleted by a parallel delete) since the refusal
                return True
            ctx.progress(key, "waiting for Lambda to release its network interfaces")
            return False
        return True

    _until(ctx, key, "deletion", attempt)


def lambda_interfaces(ctx: Context, held_by: dict[str, str]) -> list[str]:
    """The Lambda network interfaces still in `held_by` (e.g. {"group-id": sg}). Those Lambda
    left detached (its function's role was gone when it came to delete them) are deleted here,
    as their owner must (https://docs.aws.amazon.com/lambda/latest/dg/configuration-vpc.html)."""
    ec2 = ctx.aws.client("ec2")
    filters = [{"Name": name, "Values": [value]} for name, value in held_by.items()] + [
        {"Name": "description", "Values": [f"{LAMBDA_ENI}*"]}
    ]
    found = ec2.describe_network_interfaces(Filters=filters)["NetworkInterfaces"]
    for eni in found:
        if eni["Status"] == "available":  # the subnet's or the group's delete may take it first
            forget(ec2, "delete_network_interface", NetworkInterfaceId=eni["NetworkInterfaceId"])
    return [eni["NetworkInterfaceId"] for eni in found]


def wait_for_lambda_interfaces(ctx: Context, key: str, group_ids: Iterable[str]) -> None:
    """Until Lambda has released the network interfaces of a deleted function (with its
    execution role, which must outlive them), bounded by network.delete_timeout_seconds."""
    ctx.progress(key, "waiting for Lambda to release the function's network interfaces")
    for group in group_ids:
        _until(
            ctx,
            key,
            "release of the network interfaces",
            lambda group=group: not lambda_interfaces(ctx, {"group-id": group}),
        )
