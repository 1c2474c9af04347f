"""IAM roles for every service of the pipeline, each with one inline least-privilege policy
(its documents are in `iam_policies`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from mlpipe.core.context import Context
from mlpipe.core.diff import policy, tags_from_list, tags_to_list
from mlpipe.core.resource import AspectResource, Observed, Outputs, Refs, Resource
from mlpipe.resources.iam_policies import role_definitions, trust
from mlpipe.resources.kms import KEY


class Role(AspectResource):
    kind = "iam"
    tagging = "iam"
    tag_id = "name"
    replace_on = ("Path",)
    exact = ("Tags", "Policies")

    def __init__(self, ctx: Context, purpose: str) -> None:
        super().__init__(ctx, purpose, ctx.names.role(purpose), depends_on=(KEY,))
        self.purpose = purpose

    def read(self) -> Observed | None:
        found = self.find("iam", "get_role", RoleName=self.physical)
        if found is None:
            return None
        role = found["Role"]
        state = {
            "Path": role["Path"],
            "Description": role.get("Description", ""),
            "AssumeRolePolicy": policy(role["AssumeRolePolicyDocument"]),
            "Policies": self._policies(),
            "ManagedPolicies": sorted(self._attached()),
            "Tags": tags_from_list(role.get("Tags")),
        }
        outputs = {"name": self.physical, "arn": role["Arn"]}
        return Observed(state, outputs, self.ctx.owns(state["Tags"]))

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

    def aspects(self) -> dict[str, Callable[[Any], None]]:
        iam, role_name = self.client("iam"), {"RoleName": self.physical}
        return {
            "Description": lambda v: iam.update_role(**role_name, Description=v),
            "AssumeRolePolicy": lambda v: iam.update_assume_role_policy(
                **role_name, PolicyDocument=json.dumps(v)
            ),
            "Policies": self._put_policies,
            "ManagedPolicies": self._attach,
        }

    def _attached(self) -> list[str]:
        answer = self.client("iam").list_attached_role_policies(RoleName=self.physical)
        return [p["PolicyArn"] for p in answer["AttachedPolicies"]]

    def _policies(self) -> dict[str, Any]:
        """The role's inline policies, by name."""
        iam, role_name = self.client("iam"), {"RoleName": self.physical}
        return {
            name: policy(iam.get_role_policy(**role_name, PolicyName=name)["PolicyDocument"])
            for name in iam.list_role_policies(**role_name)["PolicyNames"]
        }

    def _put_policies(self, documents: dict[str, Any]) -> None:
        """Exactly these inline policies."""
        iam, role_name, live = self.client("iam"), {"RoleName": self.physical}, self._policies()
        for name in set(live) - set(documents):
            iam.delete_role_policy(**role_name, PolicyName=name)
        for name, document in documents.items():
            if live.get(name) != document:
                iam.put_role_policy(
                    **role_name, PolicyName=name, PolicyDocument=json.dumps(document)
                )

    def _attach(self, arns: list[str]) -> None:
        """Exactly these managed policies."""
        iam, attached = self.client("iam"), self._attached()
        for arn in set(attached) - set(arns):
            iam.detach_role_policy(RoleName=self.physical, PolicyArn=arn)
        for arn in set(arns) - set(attached):
            iam.attach_role_policy(RoleName=self.physical, PolicyArn=arn)

    def create(self, desired: dict[str, Any]) -> Outputs:
        role = self.client("iam").create_role(
            RoleName=self.physical,
            Path=desired["Path"],
            Description=desired["Description"],
            AssumeRolePolicyDocument=json.dumps(desired["AssumeRolePolicy"]),
            Tags=tags_to_list(desired["Tags"]),
        )["Role"]
        self._put_policies(desired["Policies"])
        return {"name": self.physical, "arn": role["Arn"]}

    def delete(self, observed: Observed) -> None:
        self._put_policies({})
        self._attach([])
        self.client("iam").delete_role(RoleName=self.physical)


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
