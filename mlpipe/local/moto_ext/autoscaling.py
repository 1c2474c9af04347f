"""Application Auto Scaling's not-found errors in the embedded AWS.

Deregistering a scalable target or deleting a scaling policy that does not exist fails with
ObjectNotFoundException on AWS
(https://docs.aws.amazon.com/autoscaling/application/APIReference/API_DeregisterScalableTarget.html,
https://docs.aws.amazon.com/autoscaling/application/APIReference/API_DeleteScalingPolicy.html);
moto 5.2 answers a ValidationException instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from moto.applicationautoscaling.exceptions import AWSValidationException
from moto.applicationautoscaling.models import ApplicationAutoscalingBackend
from moto.core.exceptions import JsonRESTError

from mlpipe.local.moto_ext import install_declared, wrapper_of


class ObjectNotFound(JsonRESTError):
    def __init__(self, message: str) -> None:
        super().__init__("ObjectNotFoundException", message)


@wrapper_of(ApplicationAutoscalingBackend, "deregister_scalable_target", "delete_scaling_policy")
def _not_found(original: Callable[..., Any]) -> Callable[..., Any]:
    """What names a missing target or policy is ObjectNotFoundException, as on AWS."""

    def call(self: ApplicationAutoscalingBackend, *args: Any, **kwargs: Any) -> Any:
        try:
            return original(self, *args, **kwargs)
        except AWSValidationException as exc:
            if not exc.message.startswith(("No scalable target found", "No scaling policy found")):
                raise
            raise ObjectNotFound(exc.message) from None

    return call


def install() -> None:
    install_declared(__name__)
