"""The API stage sits behind an AWS WAF web ACL; the embedded AWS enforces WAF's rules on web
ACLs that moto leaves out."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from mlpipe.core.context import Context
from mlpipe.core.executor import execute
from mlpipe.core.plan import Action, Plan, Step, plan_apply
from mlpipe.resources import waf
from mlpipe.resources.api import STAGE
from tests.resources.serving import destroy, everything, with_spec
from tests.support import converge

REGION = "us-east-1"


def client() -> Any:
    return boto3.client("wafv2", region_name=REGION)


def stack(ctx: Context) -> list[Any]:
    """What the module builds once (``conftest.built``): the serving set and the web ACL."""
    return [*everything(ctx), *waf.resources(ctx)]


def acl_step(plan: Plan) -> Step:
    [step] = [s for s in plan.steps if s.key == waf.WEB_ACL]
    return step


def run(plan: Plan) -> None:
    """Applies the plan the test checked: the apply that would follow it."""
    report = execute(plan)
    assert report.ok, {k: o.error for k, o in report.outcomes.items() if o.error}


def test_the_stage_is_behind_the_managed_rule_sets_and_a_rate_limit(
    ctx: Context, applied: dict[str, Any]
) -> None:
    acl = client().get_web_acl_for_resource(ResourceArn=applied[STAGE]["arn"])["WebACL"]
    assert acl["ARN"] == applied[waf.WEB_ACL]["arn"]
    assert acl["DefaultAction"] == {"Allow": {}}
    assert acl["VisibilityConfig"]["CloudWatchMetricsEnabled"] is True
    by_name = {r["Name"]: r for r in acl["Rules"]}
    assert [r["Name"] for r in sorted(acl["Rules"], key=lambda r: r["Priority"])] == [
        "AWSManagedRulesCommonRuleSet",
        "AWSManagedRulesKnownBadInputsRuleSet",
        "RateLimitPerClientIp",
    ]
    for name in waf.MANAGED_RULE_GROUPS:
        statement = by_name[name]["Statement"]["ManagedRuleGroupStatement"]
        assert statement == {"VendorName": "AWS", "Name": name}
        assert by_name[name]["OverrideAction"] == {"None": {}}
    rate = by_name["RateLimitPerClientIp"]
    assert rate["Statement"]["RateBasedStatement"]["Limit"] == ctx.spec.api.waf.rate_limit == 2000
    assert rate["Statement"]["RateBasedStatement"]["AggregateKeyType"] == "IP"
    assert rate["Action"] == {"Block": {}}
    assert all(r["VisibilityConfig"]["CloudWatchMetricsEnabled"] for r in acl["Rules"])
    tags = client().list_tags_for_resource(ResourceARN=acl["ARN"])["TagInfoForResource"]["TagList"]
    assert {"Key": "mlpipe:resource", "Value": waf.WEB_ACL} in tags


def test_a_rule_removed_behind_mlpipe_is_put_back(ctx: Context, applied: dict[str, Any]) -> None:
    wafc, outputs = client(), applied[waf.WEB_ACL]
    live = wafc.get_web_acl(Name=ctx.names.web_acl, Scope="REGIONAL", Id=outputs["id"])
    acl = live["WebACL"]
    wafc.update_web_acl(
        Name=acl["Name"],
        Scope="REGIONAL",
        Id=acl["Id"],
        DefaultAction=acl["DefaultAction"],
        Rules=[r for r in acl["Rules"] if r["Name"] != "RateLimitPerClientIp"],
        VisibilityConfig=acl["VisibilityConfig"],
        LockToken=live["LockToken"],
    )
    plan = plan_apply(stack(ctx))
    assert acl_step(plan).action is Action.UPDATE and acl_step(plan).diff.paths() == ["Rules"]
    run(plan)
    acl = wafc.get_web_acl_for_resource(ResourceArn=applied[STAGE]["arn"])["WebACL"]
    assert len(acl["Rules"]) == 3


def test_a_new_rate_limit_updates_the_acl_in_place(ctx: Context, applied: dict[str, Any]) -> None:
    stricter = with_spec(ctx, "api.waf", rate_limit=500)
    converge(stack(stricter))
    acl = client().get_web_acl_for_resource(ResourceArn=applied[STAGE]["arn"])["WebACL"]
    assert acl["Id"] == applied[waf.WEB_ACL]["id"]
    rate = next(r for r in acl["Rules"] if r["Name"] == "RateLimitPerClientIp")
    assert rate["Statement"]["RateBasedStatement"]["Limit"] == 500
    assert not plan_apply(stack(stricter)).changes


def test_tags_changed_behind_mlpipe_are_synced_without_touching_the_rules(
    ctx: Context, applied: dict[str, Any]
) -> None:
    arn = applied[waf.WEB_ACL]["arn"]
    client().untag_resource(ResourceARN=arn, TagKeys=["mlpipe:resource"])
    client().tag_resource(ResourceARN=arn, Tags=[{"Key": "extra", "Value": "x"}])
    plan = plan_apply(stack(ctx))
    assert acl_step(plan).action is Action.UPDATE and acl_step(plan).diff.paths() == ["Tags"]
    ctx.aws.log.reset()
    run(plan)
    assert sorted(ctx.aws.log.writes()) == ["wafv2:TagResource", "wafv2:UntagResource"]
    tags = client().list_tags_for_resource(ResourceARN=arn)["TagInfoForResource"]["TagList"]
    keys = {t["Key"] for t in tags}
    assert "mlpipe:resource" in keys and "extra" not in keys


def test_destroy_disassociates_then_deletes(ctx: Context, applied: dict[str, Any]) -> None:
    destroy(stack(ctx))
    assert client().list_web_acls(Scope="REGIONAL")["WebACLs"] == []


# --- the embedded AWS ---------------------------------------------------------------------------

VISIBILITY = {"SampledRequestsEnabled": True, "CloudWatchMetricsEnabled": True, "MetricName": "m"}
BLOCK_ALL = {
    "Name": "rate",
    "Priority": 0,
    "Statement": {"RateBasedStatement": {"Limit": 100, "AggregateKeyType": "IP"}},
    "Action": {"Block": {}},
    "VisibilityConfig": VISIBILITY,
}
MANAGED = {
    "Name": "common",
    "Priority": 1,
    "Statement": {
        "ManagedRuleGroupStatement": {"VendorName": "AWS", "Name": "AWSManagedRulesCommonRuleSet"}
    },
    "OverrideAction": {"None": {}},
    "VisibilityConfig": VISIBILITY,
}


def create(rules: list[dict[str, Any]], name: str = "acl") -> dict[str, Any]:
    return client().create_web_acl(
        Name=name,
        Scope="REGIONAL",
        DefaultAction={"Allow": {}},
        VisibilityConfig=VISIBILITY,
        Rules=rules,
    )["Summary"]


def error(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


@pytest.mark.parametrize(
    "rule",
    [
        {k: v for k, v in BLOCK_ALL.items() if k != "Action"},
        {**BLOCK_ALL, "OverrideAction": {"None": {}}},
        {k: v for k, v in MANAGED.items() if k != "OverrideAction"},
        {**MANAGED, "Action": {"Block": {}}},
    ],
    ids=["no-action", "override-on-a-rule", "no-override-on-a-group", "action-on-a-group"],
)
def test_a_rule_with_the_wrong_action_field_is_refused(ctx: Context, rule: dict[str, Any]) -> None:
    with pytest.raises(ClientError) as caught:
        create([rule])
    assert error(caught) == "WAFInvalidParameterException"


def test_a_taken_name_is_refused_with_wafs_duplicate_item_code(ctx: Context) -> None:
    create([BLOCK_ALL])
    with pytest.raises(ClientError) as caught:
        create([BLOCK_ALL])
    assert error(caught) == "WAFDuplicateItemException"


def test_update_web_acl_replaces_the_rules(ctx: Context) -> None:
    summary = create([BLOCK_ALL, MANAGED])
    client().update_web_acl(
        Name="acl",
        Scope="REGIONAL",
        Id=summary["Id"],
        DefaultAction={"Allow": {}},
        VisibilityConfig=VISIBILITY,
        Rules=[],
        LockToken=summary["LockToken"],
    )
    acl = client().get_web_acl(Name="acl", Scope="REGIONAL", Id=summary["Id"])["WebACL"]
    assert acl["Rules"] == []


def test_an_associated_acl_cannot_be_deleted_and_a_missing_stage_not_associated(
    ctx: Context, applied: dict[str, Any]
) -> None:
    wafc, outputs = client(), applied[waf.WEB_ACL]
    token = wafc.get_web_acl(Name=ctx.names.web_acl, Scope="REGIONAL", Id=outputs["id"])[
        "LockToken"
    ]
    with pytest.raises(ClientError) as caught:
        wafc.delete_web_acl(
            Name=ctx.names.web_acl, Scope="REGIONAL", Id=outputs["id"], LockToken=token
        )
    assert error(caught) == "WAFAssociatedItemException"
    missing = applied[STAGE]["arn"].replace("/stages/prod", "/stages/nope")
    with pytest.raises(ClientError) as caught:
        wafc.associate_web_acl(WebACLArn=outputs["arn"], ResourceArn=missing)
    assert error(caught) == "WAFNonexistentItemException"


def test_associating_another_acl_replaces_the_association(
    ctx: Context, applied: dict[str, Any]
) -> None:
    wafc, stage = client(), applied[STAGE]["arn"]
    other = create([BLOCK_ALL], name="other")
    wafc.associate_web_acl(WebACLArn=other["ARN"], ResourceArn=stage)
    assert wafc.get_web_acl_for_resource(ResourceArn=stage)["WebACL"]["ARN"] == other["ARN"]
    # mlpipe's ACL is no longer associated: the next apply puts it back.
    plan = plan_apply(stack(ctx))
    assert acl_step(plan).diff.paths() == ["AssociatedWith"]
    run(plan)
    assert (
        wafc.get_web_acl_for_resource(ResourceArn=stage)["WebACL"]["ARN"]
        == (applied[waf.WEB_ACL]["arn"])
    )
