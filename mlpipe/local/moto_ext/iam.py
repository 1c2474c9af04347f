"""IAM ``CreateServiceLinkedRole`` names a role as AWS does where moto's derivation from the
service name differs (Batch's is ``AWSServiceRoleForBatch``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from moto.iam.models import IAMBackend

from mlpipe.local.moto_ext import install_declared, wrapper_of

# Names AWS gives service-linked roles where moto's derivation from the service name differs.
_SERVICE_LINKED_ROLE_NAMES = {"batch.amazonaws.com": "AWSServiceRoleForBatch"}


@wrapper_of(IAMBackend, "create_service_linked_role")
def _service_linked_role(original: Callable[..., Any]) -> Callable[..., Any]:
    """CreateServiceLinkedRole names the role as AWS does (``AWSServiceRoleForBatch``)."""

    def create(self: IAMBackend, service_name: str, description: str, suffix: str) -> Any:
        name = _SERVICE_LINKED_ROLE_NAMES.get(service_name)
        if name is None:
            return original(self, service_name, description, suffix)
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Action": ["sts:AssumeRole"],
                    "Effect": "Allow",
                    "Principal": {"Service": [service_name]},
                }
            ],
        }
        return self.create_role(
            f"{name}_{suffix}" if suffix else name,
            json.dumps(trust),
            f"/aws-service-role/{service_name}/",
            permissions_boundary=None,
            description=description,
            tags=[],
            max_session_duration="3600",
            linked_service=service_name,
        )

    return create


def install() -> None:
    install_declared(__name__)
