"""AWS WAFv2 web ACL rules moto does not enforce, as the WAF API reference states them
(https://docs.aws.amazon.com/waf/latest/APIReference/):

- ``UpdateWebACL`` replaces the whole definition: rules left out are removed (moto keeps the old
  rules when ``Rules`` is empty or missing).
- ``DeleteWebACL`` refuses a web ACL still associated with a resource
  (``WAFAssociatedItemException``).
- ``AssociateWebACL`` refuses an API Gateway stage that does not exist
  (``WAFNonexistentItemException``); a resource has at most one web ACL, so associating another
  one replaces the association (moto records the resource under both).
- A name already taken in the scope is refused with ``WAFDuplicateItemException`` (its code in
  the API reference, API_CreateWebACL.html "Errors"); moto answers ``WafV2DuplicateItem``.
- A rule that references a rule group (``ManagedRuleGroupStatement``,
  ``RuleGroupReferenceStatement``) takes an ``OverrideAction`` and no ``Action``; any other rule
  takes an ``Action`` and no ``OverrideAction`` (``WAFInvalidParameterException``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from moto.wafv2.exceptions import (
    WAFNonexistentItemException,
    WAFv2ClientError,
    WAFV2DuplicateItemException,
)
from moto.wafv2.models import APIGATEWAY_REGEX, WAFV2Backend

from mlpipe.local.moto_ext import install_declared, wrapper_of

GROUP_STATEMENTS = ("ManagedRuleGroupStatement", "RuleGroupReferenceStatement")


class WAFAssociatedItemException(WAFv2ClientError):
    def __init__(self) -> None:
        super().__init__(
            "WAFAssociatedItemException",
            "AWS WAF couldn't perform the operation because your resource is being used by "
            "another resource or it's associated with another resource.",
        )


class WAFDuplicateItemException(WAFv2ClientError):
    def __init__(self) -> None:
        super().__init__(
            "WAFDuplicateItemException",
            "AWS WAF could not perform the operation because some resource in your request is a "
            "duplicate of an existing one.",
        )


class WAFInvalidParameterException(WAFv2ClientError):
    def __init__(self, field: str, rule: str) -> None:
        super().__init__(
            "WAFInvalidParameterException",
            "Error reason: You have used none or multiple values for a field that requires "
            f"exactly one value., field: {field}, parameter: {rule}",
        )


def check_rules(rules: list[dict[str, Any]] | None) -> None:
    for rule in rules or []:
        references_group = any(k in rule.get("Statement", {}) for k in GROUP_STATEMENTS)
        if references_group and ("Action" in rule or "OverrideAction" not in rule):
            raise WAFInvalidParameterException("RULE_ACTION", rule.get("Name", ""))
        if not references_group and ("OverrideAction" in rule or "Action" not in rule):
            raise WAFInvalidParameterException("RULE_ACTION", rule.get("Name", ""))


@wrapper_of(WAFV2Backend, "create_web_acl")
def _create(original: Callable[..., Any]) -> Callable[..., Any]:
    def create_web_acl(self: WAFV2Backend, *args: Any, **kwargs: Any) -> Any:
        rules = args[6] if len(args) > 6 else kwargs.get("rules")
        check_rules(rules)
        try:
            return original(self, *args, **kwargs)
        except WAFV2DuplicateItemException:
            raise WAFDuplicateItemException() from None

    return create_web_acl


@wrapper_of(WAFV2Backend, "update_web_acl")
def _update(original: Callable[..., Any]) -> Callable[..., Any]:
    def update_web_acl(self: WAFV2Backend, *args: Any, **kwargs: Any) -> Any:
        name, web_acl_id = args[0], args[1]
        rules = args[3] if len(args) > 3 else kwargs.get("rules")
        check_rules(rules)
        token = original(self, *args, **kwargs)
        if not rules:
            self.get_web_acl(None, name, web_acl_id).rules = []
        return token

    return update_web_acl


@wrapper_of(WAFV2Backend, "delete_web_acl")
def _delete(original: Callable[..., Any]) -> Callable[..., Any]:
    def delete_web_acl(self: WAFV2Backend, name: str, scope: str, _id: str, lock_token: str) -> Any:
        acl = self.get_web_acl(None, name, _id)
        if acl.associated_resources:
            raise WAFAssociatedItemException()
        return original(self, name, scope, _id, lock_token)

    return delete_web_acl


@wrapper_of(WAFV2Backend, "associate_web_acl")
def _associate(original: Callable[..., Any]) -> Callable[..., Any]:
    def associate_web_acl(self: WAFV2Backend, web_acl_arn: str, resource_arn: str) -> Any:
        if re.search(APIGATEWAY_REGEX, resource_arn) and not self._find_apigw_stage(resource_arn):
            raise WAFNonexistentItemException()
        if web_acl_arn not in self.wacls:
            raise WAFNonexistentItemException()
        for acl in self.wacls.values():
            while resource_arn in acl.associated_resources:
                acl.associated_resources.remove(resource_arn)
        return original(self, web_acl_arn, resource_arn)

    return associate_web_acl


def install() -> None:
    install_declared(__name__)
