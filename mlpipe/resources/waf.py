"""AWS WAF in front of the API: a regional web ACL associated with the stage.

The ACL allows by default and runs, in order, AWS's managed common rule set, its known-bad-inputs
rule set, and a rate-based rule that blocks a client IP sending more than `api.waf.rate_limit`
requests in 5 minutes. Every rule and the ACL publish CloudWatch metrics and keep sampled
requests. Updates replace the whole definition, guarded by the lock token WAF hands out with
each read (https://docs.aws.amazon.com/waf/latest/APIReference/API_UpdateWebACL.html).
"""

from __future__ import annotations

from typing import Any, ClassVar

from mlpipe.core.context import Context
from mlpipe.core.diff import Diff, tags_to_list
from mlpipe.core.find import forget
from mlpipe.core.resource import Observed, Outputs, Refs, Resource
from mlpipe.resources.api import STAGE, find_api, resource_arn

WEB_ACL = "wafv2:web-acl"
SCOPE = "REGIONAL"
MANAGED_RULE_GROUPS = ("AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet")
RATE_RULE = "RateLimitPerClientIp"
# The window AWS WAF counts a rate-based rule's requests over (its default).
RATE_WINDOW_SECONDS = 300
DEFINITION = ("Description", "DefaultAction", "Rules", "VisibilityConfig")
# WAF may not see a web ACL it has just created: the association is retried.
NOT_READY = "wafv2-entity-unavailable"


def _visibility(metric: str) -> dict[str, Any]:
    return {
        "SampledRequestsEnabled": True,
        "CloudWatchMetricsEnabled": True,
        "MetricName": metric,
    }


def rules(ctx: Context) -> list[dict[str, Any]]:
    managed = [
        {
            "Name": name,
            "Priority": priority,
            "Statement": {"ManagedRuleGroupStatement": {"VendorName": "AWS", "Name": name}},
            # A rule group's rules act themselves; None keeps their actions.
            "OverrideAction": {"None": {}},
            "VisibilityConfig": _visibility(name),
        }
        for priority, name in enumerate(MANAGED_RULE_GROUPS)
    ]
    rate = {
        "Name": RATE_RULE,
        "Priority": len(managed),
        "Statement": {
            "RateBasedStatement": {
                "Limit": ctx.spec.api.waf.rate_limit,
                "AggregateKeyType": "IP",
                "EvaluationWindowSec": RATE_WINDOW_SECONDS,
            }
        },
        "Action": {"Block": {}},
        "VisibilityConfig": _visibility(RATE_RULE),
    }
    return [*managed, rate]


def _present(value: Any) -> Any:
    """A live rule without the fields WAF reports as null."""
    if isinstance(value, dict):
        return {k: _present(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_present(v) for v in value]
    return value


class WebAcl(Resource):
    kind = "wafv2"
    tagging: ClassVar[str | None] = "wafv2"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, "web-acl", ctx.names.web_acl, depends_on=(STAGE,))

    @property
    def waf(self) -> Any:
        return self.client("wafv2")

    def _summary(self) -> dict[str, Any] | None:
        params: dict[str, Any] = {"Scope": SCOPE, "Limit": 100}
        while True:
            page = self.waf.list_web_acls(**params)
            for summary in page.get("WebACLs", []):
                if summary["Name"] == self.physical:
                    return dict(summary)
            if not page.get("NextMarker"):
                return None
            params["NextMarker"] = page["NextMarker"]

    def _stage_arn(self) -> str | None:
        api = find_api(self.ctx)
        if api is None:
            return None
        return resource_arn(self.ctx, f"/restapis/{api['id']}/stages/{self.ctx.spec.api.stage}")

    def read(self) -> Observed | None:
        summary = self._summary()
        if summary is None:
            return None
        answer = self.find(
            "wafv2", "get_web_acl", Name=self.physical, Scope=SCOPE, Id=summary["Id"]
        )
        if answer is None:
            return None
        acl = answer["WebACL"]
        tags = self.live_tags(acl["ARN"])
        stage_arn = self._stage_arn()
        associated = None
        if stage_arn:
            found = self.waf.get_web_acl_for_resource(ResourceArn=stage_arn).get("WebACL") or {}
            associated = stage_arn if found.get("ARN") == acl["ARN"] else None
        state = {
            "Description": acl.get("Description", ""),
            "DefaultAction": _present(acl["DefaultAction"]),
            "Rules": sorted(_present(acl.get("Rules", [])), key=lambda r: r["Priority"]),
            "VisibilityConfig": acl["VisibilityConfig"],
            "AssociatedWith": associated,
            "Tags": tags,
        }
        outputs = {"arn": acl["ARN"], "id": acl["Id"], "lock_token": answer["LockToken"]}
        return Observed(state, outputs, self.ctx.owns(tags))

    def desired(self, refs: Refs) -> dict[str, Any]:
        return {
            "Description": f"mlpipe {self.ctx.names.pipeline_id}: the inference API",
            "DefaultAction": {"Allow": {}},
            "Rules": rules(self.ctx),
            "VisibilityConfig": _visibility(self.physical),
            "AssociatedWith": refs(STAGE, "arn"),
            "Tags": self.tags,
        }

    def _associate(self, acl_arn: str, stage_arn: str) -> None:
        self.ctx.eventually(
            lambda: self.waf.associate_web_acl(WebACLArn=acl_arn, ResourceArn=stage_arn),
            NOT_READY,
        )

    def create(self, desired: dict[str, Any]) -> Outputs:
        summary = self.waf.create_web_acl(
            Name=self.physical,
            Scope=SCOPE,
            **{k: desired[k] for k in DEFINITION},
            Tags=tags_to_list(desired["Tags"]),
        )["Summary"]
        self._associate(summary["ARN"], desired["AssociatedWith"])
        return {"arn": summary["ARN"], "id": summary["Id"], "lock_token": summary["LockToken"]}

    def update(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> Outputs:
        outputs = dict(observed.outputs)
        if any(changes.touches(p) for p in DEFINITION):
            outputs["lock_token"] = self.waf.update_web_acl(
                Name=self.physical,
                Scope=SCOPE,
                Id=outputs["id"],
                LockToken=outputs["lock_token"],
                **{k: desired[k] for k in DEFINITION},
            )["NextLockToken"]
        if changes.touches("AssociatedWith"):
            self._associate(outputs["arn"], desired["AssociatedWith"])
        return outputs

    def delete(self, observed: Observed) -> None:
        # WAF refuses to delete a web ACL still associated with a resource.
        if observed.state["AssociatedWith"]:
            self.waf.disassociate_web_acl(ResourceArn=observed.state["AssociatedWith"])
        forget(
            self.waf,
            "delete_web_acl",
            Name=self.physical,
            Scope=SCOPE,
            Id=observed.outputs["id"],
            LockToken=observed.outputs["lock_token"],
        )


def resources(ctx: Context) -> list[Resource]:
    return [WebAcl(ctx)]
