"""A small IAM policy evaluator for the runtime-permission tests.

It decides a request as IAM does for the policy types and condition operators the pipeline's
policies use (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html):
an explicit Deny anywhere wins; otherwise an identity or resource-based policy must Allow (a KMS
key policy must always allow, itself or by delegating to the account's IAM policies), and a VPC
endpoint policy, when the request goes through an endpoint, must Allow as well.

Supported: Action/NotAction and Resource/NotResource with `*`/`?` wildcards, Principal (`*`,
`AWS` account roots and role ARNs, `Service`), and the condition operators StringEquals,
StringNotEquals, StringLike, StringNotLike, ArnEquals, ArnLike, ArnNotLike, Bool, Null, each
with `...IfExists`. Several keys under an operator must all hold; several values of a key are
alternatives; a key missing from the request fails its condition unless `IfExists` (or Null).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

Document = Mapping[str, Any]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@lru_cache(maxsize=4096)
def _pattern(glob: str, case_sensitive: bool) -> re.Pattern[str]:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob)
    return re.compile(f"^{body}$", 0 if case_sensitive else re.IGNORECASE)


def like(glob: str, value: str, case_sensitive: bool = True) -> bool:
    return bool(_pattern(glob, case_sensitive).match(value))


@dataclass(frozen=True)
class Principal:
    """Who sends a request: a role of an account, or an AWS service."""

    account: str | None = None
    arn: str | None = None
    service: str | None = None

    def context(self) -> dict[str, str]:
        if self.service:
            return {"aws:PrincipalIsAWSService": "true"}
        assert self.account and self.arn
        return {
            "aws:PrincipalAccount": self.account,
            "aws:PrincipalArn": self.arn,
            "aws:PrincipalIsAWSService": "false",
        }


@dataclass(frozen=True)
class Request:
    action: str
    resource: str
    context: Mapping[str, str] = field(default_factory=dict)


def _condition_holds(operator: str, wanted: Mapping[str, Any], context: Mapping[str, str]) -> bool:
    lowered = {k.lower(): v for k, v in context.items()}
    if_exists = operator.endswith("IfExists")
    base = operator.removesuffix("IfExists")
    for key, values in wanted.items():
        present = key.lower() in lowered
        values = [str(v) for v in _as_list(values)]
        if base == "Null":
            if any((v.lower() == "true") == present for v in values):
                return False
            continue
        if not present:
            if if_exists:
                continue
            return False
        actual = str(lowered[key.lower()])
        if base in ("StringEquals", "ArnEquals"):
            ok = actual in values
        elif base == "StringNotEquals":
            ok = actual not in values
        elif base in ("StringLike", "ArnLike"):
            ok = any(like(v, actual) for v in values)
        elif base in ("StringNotLike", "ArnNotLike"):
            ok = not any(like(v, actual) for v in values)
        elif base == "Bool":
            ok = actual.lower() in [v.lower() for v in values]
        else:
            raise ValueError(f"condition operator {operator} is not supported by this evaluator")
        if not ok:
            return False
    return True


def _principal_matches(element: Any, who: Principal) -> bool:
    if element == "*":
        return True
    for kind, values in dict(element).items():
        for value in _as_list(values):
            if kind == "AWS" and who.account:
                if value == "*" or value == who.arn:
                    return True
                if value in (who.account, f"arn:aws:iam::{who.account}:root"):
                    return True
            if kind == "Service" and who.service and value == who.service:
                return True
    return False


def statement_applies(
    statement: Mapping[str, Any], request: Request, who: Principal | None
) -> bool:
    """Whether a statement covers the request (its effect aside)."""
    if "Action" in statement:
        if not any(like(a, request.action, False) for a in _as_list(statement["Action"])):
            return False
    elif any(like(a, request.action, False) for a in _as_list(statement["NotAction"])):
        return False
    if "Resource" in statement:
        if not any(like(r, request.resource) for r in _as_list(statement["Resource"])):
            return False
    elif "NotResource" in statement and any(
        like(r, request.resource) for r in _as_list(statement["NotResource"])
    ):
        return False
    if (
        who is not None
        and "Principal" in statement
        and not _principal_matches(statement["Principal"], who)
    ):
        return False
    context = {**(who.context() if who else {}), **request.context}
    return all(
        _condition_holds(operator, wanted, context)
        for operator, wanted in (statement.get("Condition") or {}).items()
    )


def decide(
    documents: Iterable[Document], request: Request, who: Principal | None = None
) -> str | None:
    """ "Deny", "Allow" or None (no statement applies) over some policy documents."""
    decision = None
    for document in documents:
        for statement in _as_list(document.get("Statement", [])):
            if statement_applies(statement, request, who):
                if statement["Effect"] == "Deny":
                    return "Deny"
                decision = "Allow"
    return decision


@dataclass(frozen=True)
class Access:
    """Every policy that may decide one request."""

    identity: tuple[Document, ...] = ()
    resource: Document | None = None
    key_policy: Document | None = None
    endpoint: Document | None = None

    def allows(self, request: Request, who: Principal) -> tuple[bool, str]:
        context = {**who.context(), **request.context}
        request = Request(request.action, request.resource, context)
        layers = {
            "identity": decide(self.identity, request) if not who.service else None,
            "resource": decide([self.resource], request, who) if self.resource else None,
            "key": decide([self.key_policy], request, who) if self.key_policy else None,
            "endpoint": decide([self.endpoint], request, who) if self.endpoint else None,
        }
        denied = [name for name, decision in layers.items() if decision == "Deny"]
        if denied:
            return False, f"explicitly denied by the {' and '.join(denied)} policy"
        if self.endpoint is not None and layers["endpoint"] != "Allow":
            return False, "the VPC endpoint policy does not allow it"
        if self.key_policy is not None:
            root = Principal(account=who.account, arn=f"arn:aws:iam::{who.account}:root")
            direct = decide([self.key_policy], request, who) == "Allow" and _names(
                self.key_policy, who
            )
            delegated = (
                not who.service
                and decide([self.key_policy], request, root) == "Allow"
                and layers["identity"] == "Allow"
            )
            if direct or delegated:
                return True, "allowed"
            return (
                False,
                "the key policy neither allows it nor delegates it to an allowing IAM policy",
            )
        if layers["identity"] == "Allow" or layers["resource"] == "Allow":
            return True, "allowed"
        return False, "no identity or resource-based policy allows it"


def _names(document: Document, who: Principal) -> bool:
    """Whether an allowing key-policy statement names the principal itself (not the root)."""
    for statement in _as_list(document.get("Statement", [])):
        principal = statement.get("Principal")
        if statement.get("Effect") != "Allow" or not isinstance(principal, Mapping):
            continue
        if who.service and who.service in _as_list(principal.get("Service", [])):
            return True
        if who.arn and who.arn in _as_list(principal.get("AWS", [])):
            return True
    return False
