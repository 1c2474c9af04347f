"""The network interfaces of VPC Lambdas, as AWS manages them.

- A function with a ``VpcConfig`` owns a Lambda-managed network interface for each of its
  subnets with its security groups; functions with the same subnet and security groups share it
  ("Lambda creates a Hyperplane ENI ... for each unique combination of security group and
  subnet", https://docs.aws.amazon.com/lambda/latest/dg/configuration-vpc.html). It shows in
  ``DescribeNetworkInterfaces`` as AWS shows it: ``InterfaceType: lambda``, requester-managed,
  ``Status: in-use``, description ``AWS Lambda VPC ENI-<function>-<uuid>`` (the prefix
  terraform-provider-aws matches, hashicorp/terraform-provider-aws#10329).
- While it exists, ``DeleteSubnet`` and ``DeleteSecurityGroup`` answer ``DependencyViolation``,
  and ``DeleteNetworkInterface`` refuses it while it is in use.
- Deleting the last function that uses it releases it only after
  ``MLPIPE_LOCAL_ENI_RELEASE_WINDOW`` seconds (default 2; on AWS it takes minutes), and only if
  that function's execution role still exists then: Lambda deletes the interface with the role's
  ``ec2:DeleteNetworkInterface`` permission (the developer guide's execution-role permissions
  for VPC access). Without the role the interface is left behind, detached (``available``), and
  blocks the subnet and security group until someone deletes it.

Time is :data:`mlpipe.local.moto_ext.windows.clock`, which tests replace.
"""

from __future__ import annotations

import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from moto.awslambda.models import LambdaBackend
from moto.ec2.exceptions import DependencyViolationError, EC2ClientError
from moto.ec2.models import EC2Backend, ec2_backends
from moto.iam.exceptions import NotFoundException as IAMNotFound
from moto.iam.models import iam_backends

from mlpipe.local.moto_ext import seconds_from_env, windows

DEFAULT_RELEASE_WINDOW = 2.0
DESCRIPTION = "AWS Lambda VPC ENI-"
# The requester AWS shows for Lambda's Hyperplane interfaces.
REQUESTER_ID = "AROAXXXXXXXXXXXXXXXXX:lambda"


def release_window() -> float:
    """Seconds between a function's deletion and Lambda releasing its network interfaces."""
    return seconds_from_env("MLPIPE_LOCAL_ENI_RELEASE_WINDOW", DEFAULT_RELEASE_WINDOW)


@dataclass
class _Use:
    """Who uses a Lambda interface, and when it is to be released, with which role."""

    subnet: str
    groups: frozenset[str]
    functions: dict[str, str] = field(default_factory=dict)  # function ARN -> role ARN
    release_at: float | None = None
    role: str = ""
    stranded: bool = False


# Per moto EC2 backend (one per account and region): its Lambda interfaces.
_enis: weakref.WeakKeyDictionary[EC2Backend, dict[str, _Use]] = weakref.WeakKeyDictionary()


def _tracked(ec2: EC2Backend) -> dict[str, _Use]:
    return _enis.setdefault(ec2, {})


def _attach(backend: LambdaBackend, fn: Any) -> None:
    vpc = fn._vpc_config or {}
    subnets, groups = vpc.get("SubnetIds") or [], frozenset(vpc.get("SecurityGroupIds") or [])
    if not subnets or not groups:
        return
    ec2 = ec2_backends[backend.account_id][backend.region_name]
    tracked = _tracked(ec2)
    for subnet in subnets:
        eni_id = next(
            (
                i
                for i, use in tracked.items()
                if use.subnet == subnet and use.groups == groups and use.release_at is None
            ),
            None,
        )
        if eni_id is None:
            eni = ec2.create_network_interface(
                subnet,
                [],
                group_ids=sorted(groups),
                description=f"{DESCRIPTION}{fn.function_name}-{uuid.uuid4()}",
            )
            eni.interface_type = "lambda"
            eni.requester_managed = True
            eni.requester_id = REQUESTER_ID
            eni.status = "in-use"
            eni_id = eni.id
            tracked[eni_id] = _Use(subnet, groups)
        tracked[eni_id].functions[fn.function_arn] = fn.role


def _detach(backend: LambdaBackend, fn: Any) -> None:
    ec2 = ec2_backends[backend.account_id][backend.region_name]
    for use in _tracked(ec2).values():
        role = use.functions.pop(fn.function_arn, None)
        if role is not None and not use.functions:
            use.release_at = windows.clock() + release_window()
            use.role = role


def _role_exists(ec2: EC2Backend, role_arn: str) -> bool:
    partition = role_arn.split(":")[1] if role_arn.count(":") > 1 else "aws"
    try:
        iam_backends[ec2.account_id][partition].get_role_by_arn(role_arn)
    except IAMNotFound:
        return False
    return True


def reap(ec2: EC2Backend) -> None:
    """Release the interfaces whose window has passed, where the role allows it."""
    tracked = _tracked(ec2)
    now = windows.clock()
    for eni_id, use in list(tracked.items()):
        if use.release_at is None or use.stranded or now < use.release_at:
            continue
        if _role_exists(ec2, use.role):
            ec2.enis.pop(eni_id, None)
            del tracked[eni_id]
        else:  # Lambda cannot delete it: left detached for its owner to delete
            use.stranded = True
            eni = ec2.enis.get(eni_id)
            if eni is not None:
                eni.status = "available"
                eni.interface_type = "interface"


def _blocking(ec2: EC2Backend, subnet: str = "", group: str = "") -> str | None:
    reap(ec2)
    for eni_id, use in _tracked(ec2).items():
        if eni_id in ec2.enis and (use.subnet == subnet or group in use.groups):
            return eni_id
    return None


def _create_function(original: Callable[..., Any]) -> Callable[..., Any]:
    def create(self: LambdaBackend, spec: dict[str, Any]) -> Any:
        fn = original(self, spec)
        _attach(self, fn)
        return fn

    return create


def _delete_function(original: Callable[..., Any]) -> Callable[..., Any]:
    def delete(self: LambdaBackend, function_name: str, qualifier: str | None = None) -> Any:
        fn = self.get_function(function_name) if qualifier is None else None
        result = original(self, function_name, qualifier)
        if fn is not None:
            _detach(self, fn)
        return result

    return delete


def _delete_subnet(original: Callable[..., Any]) -> Callable[..., Any]:
    def delete(self: EC2Backend, subnet_id: str) -> Any:
        if _blocking(self, subnet=subnet_id):
            raise DependencyViolationError(
                f"The subnet '{subnet_id}' has dependencies and cannot be deleted."
            )
        return original(self, subnet_id)

    return delete


def _delete_security_group(original: Callable[..., Any]) -> Callable[..., Any]:
    def delete(self: EC2Backend, name: str | None = None, group_id: str | None = None) -> Any:
        if group_id and _blocking(self, group=group_id):
            raise DependencyViolationError(f"resource {group_id} has a dependent object")
        return original(self, name=name, group_id=group_id)

    return delete


def _delete_network_interface(original: Callable[..., Any]) -> Callable[..., Any]:
    def delete(self: EC2Backend, eni_id: str) -> Any:
        reap(self)
        use = _tracked(self).get(eni_id)
        if use is not None and not use.stranded:
            raise EC2ClientError(
                "InvalidParameterValue", f"Network interface '{eni_id}' is currently in use."
            )
        _tracked(self).pop(eni_id, None)
        return original(self, eni_id)

    return delete


def _listing(original: Callable[..., Any]) -> Callable[..., Any]:
    def listed(self: EC2Backend, *args: Any, **kwargs: Any) -> Any:
        reap(self)
        return original(self, *args, **kwargs)

    return listed


def install() -> None:
    from mlpipe.local.moto_ext import _wrap

    _wrap(LambdaBackend, "create_function", _create_function)
    _wrap(LambdaBackend, "delete_function", _delete_function)
    _wrap(EC2Backend, "delete_subnet", _delete_subnet)
    _wrap(EC2Backend, "delete_security_group", _delete_security_group)
    _wrap(EC2Backend, "delete_network_interface", _delete_network_interface)
    _wrap(EC2Backend, "get_all_network_interfaces", _listing)
