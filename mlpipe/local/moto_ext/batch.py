"""Batch in the embedded AWS.

- ``UpdateComputeEnvironment`` applies ``computeResources`` (maxvCpus, subnets, security
  groups); ``DeleteComputeEnvironment`` refuses an ENABLED environment or one a queue uses, and
  ``DeleteJobQueue`` a queue that is not DISABLED.
- ``SubmitJob`` takes a job definition ARN without a revision (its latest ACTIVE revision).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from moto.batch.exceptions import ClientException as BatchClientException
from moto.batch.exceptions import InvalidParameterValueException as BatchInvalidParameter
from moto.batch.models import BatchBackend
from moto.ec2.exceptions import InvalidSubnetIdError

from mlpipe.local.moto_ext import install_declared, wrapper_of

# What UpdateComputeEnvironment may change in computeResources; Fargate takes only these three.
_FARGATE_UPDATABLE = frozenset({"maxvCpus", "subnets", "securityGroupIds"})
_EC2_UPDATABLE = _FARGATE_UPDATABLE | {"minvCpus", "desiredvCpus"}


@wrapper_of(BatchBackend, "update_compute_environment")
def _update_compute_environment(original: Callable[..., Any]) -> Callable[..., Any]:
    """UpdateComputeEnvironment also applies ``computeResources`` (moto ignores them):
    maxvCpus, subnets and security groups, plus minvCpus/desiredvCpus on EC2 resources."""

    def update(
        self: BatchBackend,
        compute_environment_name: str,
        state: str | None,
        compute_resources: dict[str, Any] | None,
        service_role: str | None,
    ) -> tuple[str, str]:
        env = self.get_compute_environment(compute_environment_name)
        changes = dict(compute_resources or {})
        if env is not None and changes:
            fargate = "FARGATE" in env.compute_resources.get("type", "")
            allowed = _FARGATE_UPDATABLE if fargate else _EC2_UPDATABLE
            refused = sorted(set(changes) - allowed)
            if refused and fargate:
                raise BatchClientException(
                    f"{', '.join(refused)} cannot be updated on a Fargate compute environment"
                )
            _check_compute_update(self, changes)
        result = original(self, compute_environment_name, state, None, service_role)
        if env is not None:
            for key in _EC2_UPDATABLE & set(changes):
                env.compute_resources[key] = changes[key]
        return result  # type: ignore[no-any-return]

    return update


def _check_compute_update(backend: BatchBackend, changes: dict[str, Any]) -> None:
    if "maxvCpus" in changes and int(changes["maxvCpus"]) < 0:
        raise BatchInvalidParameter("maxVCpus must be positive")
    for subnet_id in changes.get("subnets", []):
        try:
            backend.ec2_backend.get_subnet(subnet_id)
        except InvalidSubnetIdError:
            raise BatchInvalidParameter(f"subnet {subnet_id} does not exist") from None
    for group_id in changes.get("securityGroupIds", []):
        if backend.ec2_backend.get_security_group_from_id(group_id) is None:
            raise BatchInvalidParameter(f"security group {group_id} does not exist")


def _refuse_unless_disabled(kind: str, resource: Any) -> None:
    if resource.state != "DISABLED":
        raise BatchClientException(
            f"Cannot delete {kind} {resource.name}: it must be DISABLED first"
        )


@wrapper_of(BatchBackend, "delete_compute_environment")
def _delete_compute_environment(original: Callable[..., Any]) -> Callable[..., Any]:
    """DeleteComputeEnvironment refuses an environment that is ENABLED or used by a queue."""

    def delete(self: BatchBackend, compute_environment_name: str) -> None:
        env = self.get_compute_environment(compute_environment_name)
        if env is not None:
            _refuse_unless_disabled("compute environment", env)
            users = [q.name for q in self._job_queues.values() if env in q.environments]
            if users:
                raise BatchClientException(
                    f"Cannot delete, found existing JobQueue relationship: {', '.join(users)}"
                )
        original(self, compute_environment_name)

    return delete


@wrapper_of(BatchBackend, "delete_job_queue")
def _delete_job_queue(original: Callable[..., Any]) -> Callable[..., Any]:
    """DeleteJobQueue refuses a queue whose state is not DISABLED."""

    def delete(self: BatchBackend, queue_name: str) -> None:
        queue = self.get_job_queue(queue_name)
        if queue is not None:
            _refuse_unless_disabled("job queue", queue)
        original(self, queue_name)

    return delete


@wrapper_of(BatchBackend, "get_job_definition")
def _latest_active(original: Callable[..., Any]) -> Callable[..., Any]:
    """SubmitJob takes a job definition ARN without a revision: AWS runs its latest ACTIVE
    revision, moto finds nothing."""

    def get_job_definition(self: BatchBackend, identifier: str) -> Any:
        found = original(self, identifier)
        prefix, _, name = identifier.partition(":job-definition/")
        if found is None and prefix.startswith("arn:") and name and ":" not in name:
            active = [
                d for d in self._job_definitions.values() if d.name == name and d.status == "ACTIVE"
            ]
            found = max(active, key=lambda d: d.revision, default=None)
        return found

    return get_job_definition


def install() -> None:
    install_declared(__name__)
