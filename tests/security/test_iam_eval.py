"""The policy evaluator the runtime-permission tests rely on decides as IAM does."""

from __future__ import annotations

from typing import Any

import pytest

from tests.security.iam_eval import Access, Principal, Request, decide, like

ROLE = Principal(account="111122223333", arn="arn:aws:iam::111122223333:role/r")
SERVICE = Principal(service="logs.us-east-1.amazonaws.com")
KEY = "arn:aws:kms:us-east-1:111122223333:key/k"


def allow(action: Any, resource: Any, **extra: Any) -> dict[str, Any]:
    return {"Statement": [{"Effect": "Allow", "Action": action, "Resource": resource, **extra}]}


@pytest.mark.parametrize(
    ("glob", "value", "expected"),
    [
        ("arn:aws:s3:::b/*", "arn:aws:s3:::b/a/b.json", True),
        ("arn:aws:s3:::b/*", "arn:aws:s3:::bb/a", False),
        ("arn:aws:logs:*:log-group:x:*", "arn:aws:logs:r:1:log-group:x:log-stream:s", True),
        ("a?c", "abc", True),
        ("a?c", "abbc", False),
    ],
)
def test_wildcards(glob: str, value: str, expected: bool) -> None:
    assert like(glob, value) is expected


def test_actions_match_without_case_and_resources_with_it() -> None:
    policy = allow("S3:get*", "arn:aws:s3:::b/*")
    assert decide([policy], Request("s3:GetObject", "arn:aws:s3:::b/k")) == "Allow"
    assert decide([policy], Request("s3:GetObject", "arn:aws:s3:::B/k")) is None
    assert decide([policy], Request("s3:PutObject", "arn:aws:s3:::b/k")) is None


def test_an_explicit_deny_wins() -> None:
    deny = {"Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}]}
    assert decide([allow("*", "*"), deny], Request("s3:GetObject", "x")) == "Deny"


@pytest.mark.parametrize(
    ("condition", "context", "expected"),
    [
        ({"StringEquals": {"aws:SourceAccount": "1"}}, {"aws:SourceAccount": "1"}, True),
        ({"StringEquals": {"aws:SourceAccount": "1"}}, {"aws:SourceAccount": "2"}, False),
        ({"StringEquals": {"aws:SourceAccount": "1"}}, {}, False),
        ({"StringEqualsIfExists": {"aws:SourceAccount": "1"}}, {}, True),
        ({"StringLike": {"s3:prefix": ["p", "p/*"]}}, {"s3:prefix": "p/x"}, True),
        (
            {"ArnLike": {"aws:SourceArn": "arn:aws:ecs:r:1:*"}},
            {"aws:SourceArn": "arn:aws:ecs:r:1:task/x"},
            True,
        ),
        (
            {"ArnLike": {"aws:SourceArn": "arn:aws:ecs:r:1:*"}},
            {"aws:SourceArn": "arn:aws:ecs:r:2:task/x"},
            False,
        ),
        ({"Bool": {"aws:SecureTransport": "false"}}, {"aws:SecureTransport": "true"}, False),
        ({"Null": {"aws:SourceArn": "true"}}, {}, True),
        ({"Null": {"aws:SourceArn": "true"}}, {"aws:SourceArn": "a"}, False),
        # Keys are compared without case; several keys must all hold.
        (
            {"StringEquals": {"AWS:PrincipalAccount": "1", "aws:ResourceAccount": "1"}},
            {"aws:PrincipalAccount": "1", "aws:ResourceAccount": "2"},
            False,
        ),
    ],
)
def test_conditions(condition: dict[str, Any], context: dict[str, str], expected: bool) -> None:
    policy = allow("s3:GetObject", "*", Condition=condition)
    decision = decide([policy], Request("s3:GetObject", "x", context))
    assert (decision == "Allow") is expected


def test_an_unknown_operator_is_an_error_not_a_pass() -> None:
    policy = allow("s3:GetObject", "*", Condition={"NumericLessThan": {"x": "1"}})
    with pytest.raises(ValueError, match="NumericLessThan"):
        decide([policy], Request("s3:GetObject", "x", {"x": "0"}))


def test_the_endpoint_policy_must_allow_too() -> None:
    endpoint = allow(
        "*",
        "*",
        Principal="*",
        Condition={"StringEquals": {"aws:PrincipalAccount": "111122223333"}},
    )
    access = Access(identity=(allow("s3:GetObject", "*"),), endpoint=endpoint)
    assert access.allows(Request("s3:GetObject", "x"), ROLE)[0]
    other = Principal(account="444455556666", arn="arn:aws:iam::444455556666:role/r")
    assert not Access(identity=(allow("*", "*"),), endpoint=endpoint).allows(
        Request("s3:GetObject", "x"), other
    )[0]


def test_a_key_policy_allows_itself_or_through_the_account() -> None:
    root = {
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
                "Action": "kms:*",
                "Resource": "*",
            }
        ]
    }
    request = Request("kms:Decrypt", KEY)
    assert Access(identity=(allow("kms:Decrypt", KEY),), key_policy=root).allows(request, ROLE)[0]
    assert not Access(identity=(), key_policy=root).allows(request, ROLE)[0]
    # A service is never allowed through the account's delegation, only by name.
    assert not Access(key_policy=root).allows(request, SERVICE)[0]
    named = {
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": SERVICE.service},
                "Action": "kms:Decrypt",
                "Resource": "*",
            }
        ]
    }
    assert Access(key_policy=named).allows(request, SERVICE)[0]


def test_a_resource_policy_alone_lets_a_service_in() -> None:
    topic = "arn:aws:sns:us-east-1:111122223333:t"
    policy = {
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                "Action": "sns:Publish",
                "Resource": topic,
                "Condition": {"StringEquals": {"aws:SourceAccount": "111122223333"}},
            }
        ]
    }
    cloudwatch = Principal(service="cloudwatch.amazonaws.com")
    ok = Request("sns:Publish", topic, {"aws:SourceAccount": "111122223333"})
    assert Access(resource=policy).allows(ok, cloudwatch)[0]
    assert not Access(resource=policy).allows(Request("sns:Publish", topic), cloudwatch)[0]
    assert not Access(resource=policy).allows(ok, SERVICE)[0]
