"""S3 in the embedded AWS: bucket policies evaluated with their conditions, and
``PutBucketLogging`` accepting a target bucket whose policy grants the logging service in any
of IAM's equivalent forms.

moto recognises the logging grant only when ``Principal.Service`` and ``Resource`` are single
strings with no wildcard beyond the trailing one, and refuses the call otherwise; IAM (and S3)
treat a one-element list and a string alike and match resources with wildcards
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_resource.html,
https://docs.aws.amazon.com/AmazonS3/latest/userguide/enable-server-access-logging.html).
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable
from typing import Any

from moto.iam.access_control import IAMPolicy, PermissionResult
from moto.s3.models import FakeBucket

from mlpipe.local.moto_ext import install_declared, wrapper_of

LOGGING_SERVICE = "logging.s3.amazonaws.com"


def _applies_without_context(statement: dict[str, Any]) -> bool:
    """Whether a statement applies to a request whose condition keys are all absent.

    IAM evaluates a condition on a missing key as false (so the statement does not apply),
    except for ``...IfExists`` operators and ``Null: true``, which hold.
    """
    for operator, values in statement.get("Condition", {}).items():
        if operator.endswith("IfExists"):
            continue
        if operator == "Null" and all(str(v).lower() == "true" for v in values.values()):
            continue
        return False
    return True


@wrapper_of(FakeBucket, "get_permission")
def _bucket_permission(original: Callable[..., Any]) -> Callable[..., Any]:
    """moto evaluates bucket policies without a request context and treats every condition as
    met, so "deny unless aws:SecureTransport" refuses every request. Evaluate them as IAM does
    for a request that carries no condition keys."""

    def get_permission(self: FakeBucket, action: str, resource: str) -> Any:
        if self.policy is None:
            return original(self, action, resource)
        document = json.loads(self.policy)
        statements = document["Statement"]
        statements = statements if isinstance(statements, list) else [statements]
        applicable = [
            {k: v for k, v in s.items() if k != "Condition"}
            for s in statements
            if _applies_without_context(s)
        ]
        if not applicable:
            return PermissionResult.NEUTRAL
        policy = IAMPolicy(json.dumps({**document, "Statement": applicable}))
        return policy.is_action_permitted(action, resource)

    return get_permission


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _grants_delivery(statement: dict[str, Any], object_arn: str) -> bool:
    principal = statement.get("Principal")
    services = _as_list(principal.get("Service", [])) if isinstance(principal, dict) else []
    actions = _as_list(statement.get("Action", []))
    resources = _as_list(statement.get("Resource", []))
    return (
        statement.get("Effect") == "Allow"
        and LOGGING_SERVICE in services
        and any(fnmatch.fnmatchcase("s3:PutObject", a) for a in actions)
        and any(fnmatch.fnmatchcase(object_arn, r) for r in resources)
    )


@wrapper_of(FakeBucket, "_log_permissions_enabled_policy")
def _permitted(_moto_check: Callable[..., bool]) -> Callable[..., bool]:
    """moto's check reads every statement's Principal as a mapping (and fails on "*"): replaced
    whole."""

    # moto calls it as `self._log_permissions_enabled_policy(target_bucket=, target_prefix=)`
    # (a static method): the bucket being logged, passed positionally, is not needed.
    def permitted(*_logged: Any, target_bucket: FakeBucket, target_prefix: str | None) -> bool:
        if not target_bucket.policy:
            return False
        document = json.loads(target_bucket.policy)
        # Where S3 delivers a log object: under the target prefix.
        arn = f"arn:{target_bucket.partition}:s3:::{target_bucket.name}/{target_prefix or ''}log"
        return any(_grants_delivery(s, arn) for s in _as_list(document.get("Statement", [])))

    return permitted


def install() -> None:
    install_declared(__name__)
