"""IAM roles for every service of the pipeline, each with one inline least-privilege policy
(its documents are in `iam_policies`)."""

from __future__ import annotations

import json
from typing import Any

from mlpipe.core.context import Context
from mlpipe.core.diff import Diff, policy, sync_tags, tags_from_list, tags_to_list
from mlpipe.core.errors import is_not_found
from mlpipe.core.resource import Observed, Outputs, Refs, Resource
from mlpipe.resources.iam_policies import role_definitions, trust
from mlpipe.resources.kms import KEY


class Role(Resource):
    kind = "iam"
    replace_on = ("Path",)
    exact = ("Tags", "Policies")

    def __init__(self, ctx: Context, purpose: str) -> None:
        super().__init__(ctx, purpose, ctx.names.role(purpose), depends_on=(KEY,))
        self.purpose = purpose

    def read(self) -> Observed | None:
        iam = self.client("iam")
        try:
            role = iam.get_role(RoleName=self.physical)["Role"]
        except Exception as exc:
            if is_not_found(exc):
                return None
            raise
        names = iam.list_role_policies(RoleName=self.physical)["PolicyNames"]
        policies = {
            n: policy(iam.get_role_policy(RoleName=self.physical, PolicyName=n)["PolicyDocument"])
            for n in names
        }
        attached = iam.list_attached_role_policies(RoleName=self.physical)["AttachedPolicies"]
        tags = tags_from_list(role.get("Tags"))
        state = {
            "Path": role["Path"],
            "Description": role.get("Description", ""),
            "AssumeRolePolicy": policy(role["AssumeRolePolicyDocument"]),
            "Policies": policies,
            "ManagedPolicies": sorted(p["PolicyArn"] for p in attached),
            "Tags": tags,
        }
        return Observed(state, {"name": self.physical, "arn": role["Arn"]}, self.ctx.owns(tags))

    def desired(self, refs: Refs) -> dict[str, Any]:
        service, statements = role_definitions(self.ctx, refs(KEY, "arn"))[self.purpose]
        return {
            "Path": self.ctx.names.role_path,
            "Description": f"mlpipe {self.ctx.names.pipeline_id}: {self.purpose}",
            "AssumeRolePolicy": policy(trust(self.ctx, self.purpose, service)),
            "Policies": {"least-privilege": policy({"Statement": statements})},
            "ManagedPolicies": [],
            "Tags": self.tags,
        }

    def create(self, desired: dict[str, Any]) -> Outputs:
        iam = self.client("iam")
        role = iam.create_role(
            RoleName=self.physical,
            Path=desired["Path"],
            Description=desired["Description"],
            AssumeRolePolicyDocument=json.dumps(desired["AssumeRolePolicy"]),
            Tags=tags_to_list(desired["Tags"]),
        )["Role"]
        for name, document in desired["Policies"].items():
            iam.put_role_policy(
                RoleName=self.physical, PolicyName=name, PolicyDocument=json.dumps(document)
            )
        return {"name": self.physical, "arn": role["Arn"]}

    def update(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> Outputs:
        iam, name, state = self.client("iam"), self.physical, observed.state
        if changes.touches("Description"):
            iam.update_role(RoleName=name, Description=desired["Description"])
        if changes.touches("AssumeRolePolicy"):
            iam.update_assume_role_policy(
                RoleName=name, PolicyDocument=json.dumps(desired["AssumeRolePolicy"])
            )
        for policy_name, document in desired["Policies"].items():
            if state["Policies"].get(policy_name) != document:
                iam.put_role_policy(
                    RoleName=name, PolicyName=policy_name, PolicyDocument=json.dumps(document)
                )
        for policy_name in set(state["Policies"]) - set(desired["Policies"]):
            iam.delete_role_policy(RoleName=name, PolicyName=policy_name)
        for arn in set(state["ManagedPolicies"]) - set(desired["ManagedPolicies"]):
            iam.detach_role_policy(RoleName=name, PolicyArn=arn)
        if changes.touches("Tags"):
            sync_tags(
                state["Tags"],
                desired["Tags"],
                lambda t: iam.tag_role(RoleName=name, Tags=tags_to_list(t)),
                lambda keys: iam.untag_role(RoleName=name, TagKeys=keys),
            )
        return observed.outputs

    def delete(self, observed: Observed) -> None:
        iam, name = self.client("iam"), self.physical
        for policy_name in observed.state["Policies"]:
            iam.delete_role_policy(RoleName=name, PolicyName=policy_name)
        for arn in observed.state["ManagedPolicies"]:
            iam.detach_role_policy(RoleName=name, PolicyArn=arn)
        iam.delete_role(RoleName=name)


ROLES = (
    "preprocess",
    "stream-processor",
    "sagemaker",
    "batch-job",
    "batch-execution",
    "stepfunctions",
    "events",
    "glue-crawler",
    "apigateway-logs",
    "flow-logs",
)


def role_key(purpose: str) -> str:
    return f"{Role.kind}:{purpose}"


def resources(ctx: Context) -> list[Resource]:
    return [Role(ctx, purpose) for purpose in ROLES]
