"""Eventual consistency as AWS shows it: what was just created is not usable for a while.

Each window is on by default and set in seconds by an environment variable, read at each
request (0 turns it off):

- ``MLPIPE_LOCAL_ROLE_WINDOW`` (default 2): a new IAM role cannot be assumed yet. Lambda
  ``CreateFunction`` answers ``InvalidParameterValueException: The role defined for the function
  cannot be assumed by Lambda.``, SageMaker ``CreateModel`` ``ValidationException: Could not
  assume role ...``, Step Functions ``CreateStateMachine`` ``AccessDeniedException`` and Glue
  ``CreateCrawler`` ``InvalidInputException: Service is unable to assume provided role``
  (https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html
  #troubleshoot_general_eventual-consistency).
- ``MLPIPE_LOCAL_BACKUPS_WINDOW`` (default 1): right after a table is created,
  ``UpdateContinuousBackups`` answers ``ContinuousBackupsUnavailableException``.
- ``MLPIPE_LOCAL_ENDPOINT_CONFIG_WINDOW`` (default 0.5): a new endpoint config is not visible to
  ``CreateEndpoint``/``UpdateEndpoint`` yet (``ValidationException: Could not find endpoint
  configuration``; the CreateEndpoint API reference says the read is eventually consistent).

Time is :data:`clock`, which tests replace.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from typing import Any

from moto.awslambda.exceptions import InvalidParameterValueException
from moto.awslambda.models import LambdaBackend
from moto.core.exceptions import AWSError
from moto.dynamodb.exceptions import ERROR_TYPE_PREFIX, DynamodbException
from moto.dynamodb.models import DynamoDBBackend
from moto.glue.exceptions import InvalidInputException
from moto.glue.models import GlueBackend
from moto.iam.exceptions import NotFoundException as IAMNotFound
from moto.iam.models import IAMBackend, iam_backends
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.models import SageMakerModelBackend
from moto.sagemaker.utils import arn_formatter
from moto.stepfunctions.models import StepFunctionBackend

from mlpipe.local.moto_ext import _wrap, install_declared, seconds_from_env, wrapper_of

DEFAULTS = {"ROLE": 2.0, "BACKUPS": 1.0, "ENDPOINT_CONFIG": 0.5}

clock: Callable[[], float] = time.monotonic
"""Time source of the windows, in seconds."""

# When each role, table and endpoint config was created (by object: a name may be reused).
_born: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


def window(name: str) -> float:
    """Seconds of the window `name` (ROLE, BACKUPS, ENDPOINT_CONFIG), from the environment."""
    return seconds_from_env(f"MLPIPE_LOCAL_{name}_WINDOW", DEFAULTS[name])


def _young(thing: Any, name: str) -> bool:
    born = _born.get(thing)
    return born is not None and clock() - born < window(name)


@wrapper_of(IAMBackend, "create_role")
@wrapper_of(DynamoDBBackend, "create_table")
@wrapper_of(SageMakerModelBackend, "create_endpoint_config")
def _stamped(original: Callable[..., Any]) -> Callable[..., Any]:
    def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        made = original(self, *args, **kwargs)
        _born[made] = clock()
        return made

    return create


def _role_is_young(account_id: str, partition: str, role_arn: str) -> bool:
    iam = iam_backends[account_id][partition]
    try:
        role = iam.get_role_by_arn(role_arn)
    except IAMNotFound:  # an unknown role is the service's own error
        return False
    return _young(role, "ROLE")


class _StatesAccessDenied(AWSError):
    TYPE = "AccessDeniedException"
    STATUS = 400


class _BackupsUnavailable(DynamodbException):
    def __init__(self) -> None:
        super().__init__(
            ERROR_TYPE_PREFIX + "ContinuousBackupsUnavailableException",
            message="Backups are being enabled for the table: please retry later",
        )


RoleOf = Callable[[Any, tuple[Any, ...], dict[str, Any]], str]


def _role_argument(name: str, position: int | None = None) -> RoleOf:
    """The role a create names: its argument ``name``, by keyword or at ``position``."""

    def role_of(backend: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        given = args[position] if position is not None and len(args) > position else ""
        return str(kwargs.get(name, given))

    return role_of


def _function_role(backend: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    spec = kwargs.get("spec", args[0] if args else {})
    return str(spec.get("Role", ""))


def _crawler_role(backend: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    role = _role_argument("role", 1)(backend, args, kwargs)
    if role.startswith("arn:"):
        return role
    return f"arn:{backend.partition}:iam::{backend.account_id}:role/{role}"


# The creates that assume a role, and what each answers while the role is too new.
_ROLE_USERS: tuple[tuple[type, str, RoleOf, Callable[[str], Exception]], ...] = (
    (
        LambdaBackend,
        "create_function",
        _function_role,
        lambda role: InvalidParameterValueException(
            "The role defined for the function cannot be assumed by Lambda."
        ),
    ),
    (
        SageMakerModelBackend,
        "create_model",
        _role_argument("execution_role_arn"),
        lambda role: ValidationError(message=f"Could not assume role {role}"),
    ),
    (
        StepFunctionBackend,
        "create_state_machine",
        _role_argument("roleArn", 2),
        lambda role: _StatesAccessDenied(
            "Neither the global service principal states.amazonaws.com, nor the regional "
            "one is authorized to assume the provided role."
        ),
    ),
    (
        GlueBackend,
        "create_crawler",
        _crawler_role,
        lambda role: InvalidInputException(
            "CreateCrawler",
            "Service is unable to assume provided role. Please verify role's TrustPolicy",
        ),
    ),
)


def _refused_while_young(
    role_of: RoleOf, refusal: Callable[[str], Exception]
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def create(self: Any, *args: Any, **kwargs: Any) -> Any:
            role = role_of(self, args, kwargs)
            if _role_is_young(self.account_id, self.partition, role):
                raise refusal(role)
            return original(self, *args, **kwargs)

        return create

    return make


@wrapper_of(DynamoDBBackend, "update_continuous_backups")
def _update_backups(original: Callable[..., Any]) -> Callable[..., Any]:
    def update(self: DynamoDBBackend, table_name: str, *args: Any, **kwargs: Any) -> Any:
        table = self.tables.get(table_name)
        if table is not None and _young(table, "BACKUPS"):
            raise _BackupsUnavailable()
        return original(self, table_name, *args, **kwargs)

    return update


def _config_visible(backend: SageMakerModelBackend, name: str) -> None:
    config = backend.endpoint_configs.get(name)
    if config is not None and _young(config, "ENDPOINT_CONFIG"):
        arn = arn_formatter("endpoint-config", name, backend.account_id, backend.region_name)
        raise ValidationError(message=f"Could not find endpoint configuration {arn}.")


@wrapper_of(SageMakerModelBackend, "create_endpoint", "update_endpoint")
def _config_must_be_visible(original: Callable[..., Any]) -> Callable[..., Any]:
    def call(self: SageMakerModelBackend, *args: Any, **kwargs: Any) -> Any:
        _config_visible(self, kwargs.get("endpoint_config_name", args[1] if len(args) > 1 else ""))
        return original(self, *args, **kwargs)

    return call


def install() -> None:
    install_declared(__name__)
    for cls, name, role_of, refusal in _ROLE_USERS:
        _wrap(cls, name, _refused_while_young(role_of, refusal))
