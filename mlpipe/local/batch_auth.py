"""Batch ``SubmitJob`` authorized as IAM does, for the local Step Functions runner.

Step Functions submits a job with the state machine's role. IAM authorizes ``batch:SubmitJob``
on the job queue and on the job definition ARN *as the request names it*: a name or an ARN
without a revision is evaluated as ``job-definition/<name>`` and a reference with a revision as
``job-definition/<name>:<revision>``. So a policy on ``job-definition/<name>:*`` denies a
submission without a revision, and one on ``job-definition/<name>`` denies one with it
("Accounting for job definition revisions",
https://docs.aws.amazon.com/batch/latest/userguide/iam-example-restrict-job-submission.html).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

from moto.iam.access_control import IAMPolicy, PermissionResult

ACTION = "batch:SubmitJob"


class SubmitDenied(PermissionError):
    """The message AWS gives, as Step Functions reports it in the task's failure cause."""


def evaluated_arn(kind: str, reference: str, region: str, account: str) -> str:
    """The ARN IAM evaluates for a job queue or job definition reference (name or ARN)."""
    if reference.startswith("arn:"):
        return reference
    return f"arn:aws:batch:{region}:{account}:{kind}/{reference}"


def _documents(iam: Any, role_name: str) -> list[str]:
    documents = []
    for name in iam.list_role_policies(RoleName=role_name)["PolicyNames"]:
        document = iam.get_role_policy(RoleName=role_name, PolicyName=name)["PolicyDocument"]
        documents.append(document if isinstance(document, str) else json.dumps(document))
    for attached in iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]:
        policy = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]
        version = iam.get_policy_version(
            PolicyArn=attached["PolicyArn"], VersionId=policy["DefaultVersionId"]
        )["PolicyVersion"]["Document"]
        documents.append(version if isinstance(version, str) else json.dumps(version))
    return [unquote(d) for d in documents]


def authorize_submit_job(
    iam: Any, role_arn: str, job_queue: str, job_definition: str, region: str, account: str
) -> None:
    """Raise SubmitDenied unless the role's policies allow SubmitJob on both resources."""
    documents = _documents(iam, role_arn.rsplit("/", 1)[-1])
    for resource in (
        evaluated_arn("job-queue", job_queue, region, account),
        evaluated_arn("job-definition", job_definition, region, account),
    ):
        results = [IAMPolicy(d).is_action_permitted(ACTION, resource) for d in documents]
        if PermissionResult.DENIED in results or PermissionResult.PERMITTED not in results:
            raise SubmitDenied(
                f"AccessDeniedException: User: {role_arn} is not authorized to perform: "
                f"{ACTION} on resource: {resource}"
            )
