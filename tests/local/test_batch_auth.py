"""SubmitJob authorized as IAM evaluates it: the job definition ARN as the request names it."""

from __future__ import annotations

import json

import boto3
import pytest
from localaws_testing import ACCOUNT, REGION

from mlpipe.local.batch_auth import SubmitDenied, authorize_submit_job, evaluated_arn

pytestmark = pytest.mark.usefixtures("mocked")

QUEUE = f"arn:aws:batch:{REGION}:{ACCOUNT}:job-queue/q"
DEFINITION = f"arn:aws:batch:{REGION}:{ACCOUNT}:job-definition/jobs"


def role(*resources: str) -> str:
    iam = boto3.client("iam", region_name=REGION)
    arn = iam.create_role(RoleName="sfn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    iam.put_role_policy(
        RoleName="sfn",
        PolicyName="submit",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "batch:SubmitJob", "Resource": list(resources)}
                ],
            }
        ),
    )
    return arn


def allowed(role_arn: str, definition: str) -> bool:
    iam = boto3.client("iam", region_name=REGION)
    try:
        authorize_submit_job(iam, role_arn, "q", definition, REGION, ACCOUNT)
    except SubmitDenied as exc:
        assert str(exc).startswith(f"AccessDeniedException: User: {role_arn} is not authorized")
        return False
    return True


def test_names_are_evaluated_as_arns() -> None:
    assert evaluated_arn("job-definition", "jobs:3", REGION, ACCOUNT) == f"{DEFINITION}:3"
    assert evaluated_arn("job-definition", f"{DEFINITION}:3", REGION, ACCOUNT) == f"{DEFINITION}:3"


def test_a_policy_on_any_revision_denies_a_submission_without_one() -> None:
    arn = role(QUEUE, f"{DEFINITION}:*")
    assert allowed(arn, f"{DEFINITION}:4") and allowed(arn, "jobs:4")
    assert not allowed(arn, DEFINITION) and not allowed(arn, "jobs")


def test_a_policy_without_revision_denies_a_submission_with_one() -> None:
    arn = role(QUEUE, DEFINITION)
    assert allowed(arn, "jobs")
    assert not allowed(arn, f"{DEFINITION}:1")


def test_the_queue_must_be_allowed_too() -> None:
    assert not allowed(role(f"{DEFINITION}:*"), f"{DEFINITION}:1")
