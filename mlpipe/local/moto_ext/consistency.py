"""More eventual consistency as AWS shows it, each window on by default and set in seconds by an
environment variable read at each request (0 turns it off):

- ``MLPIPE_LOCAL_MODEL_DATA_WINDOW`` (default 1): after an IAM role is created or its policies
  change, SageMaker ``CreateModel`` with that execution role answers ``ValidationException:
  Could not access model data at s3://...``: the new permission to read the model bucket has not
  propagated yet (IAM changes are eventually consistent,
  https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html
  #troubleshoot_general_eventual-consistency).
- ``MLPIPE_LOCAL_APIGATEWAY_WINDOW`` (default 0.5): right after a REST API is created,
  ``CreateDeployment`` on it, and right after a stage is created (its cache cluster is being
  made), ``UpdateStage`` on it, answer ``ConflictException: Unable to complete operation due to
  concurrent modification. Please try again later.``
  (https://docs.aws.amazon.com/apigateway/latest/api/CommonErrors.html).

Time is :data:`mlpipe.local.moto_ext.windows.clock`, which tests replace.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from moto.apigateway.exceptions import ConflictException
from moto.apigateway.models import APIGatewayBackend
from moto.iam.exceptions import NotFoundException as IAMNotFound
from moto.iam.models import IAMBackend, iam_backends
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.models import SageMakerModelBackend

from mlpipe.local.moto_ext import seconds_from_env, windows

DEFAULTS = {"MODEL_DATA": 1.0, "APIGATEWAY": 0.5}
CONFLICT = "Unable to complete operation due to concurrent modification. Please try again later."

# When each role's permissions and each REST API last changed (by object: names are reused).
_changed: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


def window(name: str) -> float:
    """Seconds of the window `name` (MODEL_DATA, APIGATEWAY), from the environment."""
    return seconds_from_env(f"MLPIPE_LOCAL_{name}_WINDOW", DEFAULTS[name])


def _recent(thing: Any, name: str) -> bool:
    changed = _changed.get(thing)
    return changed is not None and windows.clock() - changed < window(name)


def _stamp(thing: Any) -> None:
    _changed[thing] = windows.clock()


def _role_created(original: Callable[..., Any]) -> Callable[..., Any]:
    def create(self: IAMBackend, *args: Any, **kwargs: Any) -> Any:
        role = original(self, *args, **kwargs)
        _stamp(role)
        return role

    return create


def _role_changed(original: Callable[..., Any], name_at: int) -> Callable[..., Any]:
    """A call that changes the permissions of the role named by positional argument `name_at`."""

    def change(self: IAMBackend, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        _stamp(self.get_role(args[name_at] if len(args) > name_at else kwargs["role_name"]))
        return result

    return change


def _create_model(original: Callable[..., Any]) -> Callable[..., Any]:
    def create(self: SageMakerModelBackend, *args: Any, **kwargs: Any) -> Any:
        role_arn = str(kwargs.get("execution_role_arn", ""))
        try:
            role = iam_backends[self.account_id][self.partition].get_role_by_arn(role_arn)
        except IAMNotFound:
            role = None
        container = kwargs.get("primary_container") or {}
        url = container.get("ModelDataUrl")
        if role is not None and url and _recent(role, "MODEL_DATA"):
            raise ValidationError(
                message=f"Could not access model data at {url}. Please ensure that the role "
                f'"{role_arn}" exists and that its trust relationship policy allows the action '
                '"sts:AssumeRole" for the service principal "sagemaker.amazonaws.com". Also '
                'ensure that the role has "s3:GetObject" permissions and that the object is '
                f"located in {self.region_name}."
            )
        return original(self, *args, **kwargs)

    return create


def _created(original: Callable[..., Any]) -> Callable[..., Any]:
    def create(self: APIGatewayBackend, *args: Any, **kwargs: Any) -> Any:
        made = original(self, *args, **kwargs)
        _stamp(made)
        return made

    return create


def _create_deployment(original: Callable[..., Any]) -> Callable[..., Any]:
    def create(self: APIGatewayBackend, function_id: str, *args: Any, **kwargs: Any) -> Any:
        if _recent(self.get_rest_api(function_id), "APIGATEWAY"):
            raise ConflictException(CONFLICT)
        return original(self, function_id, *args, **kwargs)

    return create


def _update_stage(original: Callable[..., Any]) -> Callable[..., Any]:
    def update(self: APIGatewayBackend, function_id: str, stage_name: str, *args: Any) -> Any:
        stage = self.get_rest_api(function_id).stages.get(stage_name)
        if stage is not None and _recent(stage, "APIGATEWAY"):
            raise ConflictException(CONFLICT)
        return original(self, function_id, stage_name, *args)

    return update


def install() -> None:
    from mlpipe.local.moto_ext import _wrap

    _wrap(IAMBackend, "create_role", _role_created)
    _wrap(IAMBackend, "put_role_policy", lambda o: _role_changed(o, 0))
    _wrap(IAMBackend, "attach_role_policy", lambda o: _role_changed(o, 1))
    _wrap(IAMBackend, "update_assume_role_policy", lambda o: _role_changed(o, 0))
    _wrap(SageMakerModelBackend, "create_model", _create_model)
    _wrap(APIGatewayBackend, "create_rest_api", _created)
    _wrap(APIGatewayBackend, "create_stage", _created)
    _wrap(APIGatewayBackend, "create_deployment", _create_deployment)
    _wrap(APIGatewayBackend, "update_stage", _update_stage)
