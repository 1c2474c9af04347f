"""The moto extensions for Batch: compute environment updates, AWS's deletion rules, and the
name of Batch's service-linked role."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from localaws_testing import ACCOUNT, REGION

from mlpipe.local.moto_ext import install_extensions, uninstall_extensions

pytestmark = pytest.mark.usefixtures("mocked")

SERVICE_ROLE = (
    f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/batch.amazonaws.com/AWSServiceRoleForBatch"
)


@pytest.fixture
def network() -> dict[str, Any]:
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24")["Subnet"]["SubnetId"]
        for i in range(2)
    ]
    groups = [
        ec2.create_security_group(GroupName=f"g{i}", Description="d", VpcId=vpc)["GroupId"]
        for i in range(2)
    ]
    return {"subnets": subnets, "groups": groups}


@pytest.fixture
def batch(network: dict[str, Any]) -> Any:
    boto3.client("iam").create_service_linked_role(AWSServiceName="batch.amazonaws.com")
    client = boto3.client("batch", region_name=REGION)
    arn = client.create_compute_environment(
        computeEnvironmentName="env",
        type="MANAGED",
        state="ENABLED",
        computeResources={
            "type": "FARGATE",
            "maxvCpus": 256,
            "subnets": network["subnets"][:1],
            "securityGroupIds": network["groups"][:1],
        },
        serviceRole=SERVICE_ROLE,
    )["computeEnvironmentArn"]
    client.create_job_queue(
        jobQueueName="queue",
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": arn}],
    )
    return client


def error_of(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    error = excinfo.value.response["Error"]
    return error["Code"], error["Message"]


def resources(batch: Any) -> dict[str, Any]:
    [env] = batch.describe_compute_environments(computeEnvironments=["env"])["computeEnvironments"]
    return dict(env["computeResources"])


def test_batch_service_linked_role_has_the_aws_name() -> None:
    iam = boto3.client("iam")
    role = iam.create_service_linked_role(AWSServiceName="batch.amazonaws.com")["Role"]
    assert role["Arn"] == SERVICE_ROLE
    assert iam.get_role(RoleName="AWSServiceRoleForBatch")["Role"]["Path"] == (
        "/aws-service-role/batch.amazonaws.com/"
    )
    other = iam.create_service_linked_role(AWSServiceName="autoscaling.amazonaws.com")["Role"]
    assert other["RoleName"] == "AWSServiceRoleForAutoScaling"


def test_update_applies_compute_resources(batch: Any, network: dict[str, Any]) -> None:
    batch.update_compute_environment(
        computeEnvironment="env",
        computeResources={
            "maxvCpus": 16,
            "subnets": network["subnets"],
            "securityGroupIds": network["groups"][1:],
        },
    )
    assert resources(batch) == {
        "type": "FARGATE",
        "maxvCpus": 16,
        "subnets": network["subnets"],
        "securityGroupIds": network["groups"][1:],
    }
    batch.update_compute_environment(computeEnvironment="env", computeResources={"maxvCpus": 32})
    assert resources(batch)["maxvCpus"] == 32
    assert resources(batch)["subnets"] == network["subnets"]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"subnets": ["subnet-00000000"]}, "subnet subnet-00000000 does not exist"),
        ({"securityGroupIds": ["sg-00000000"]}, "security group sg-00000000 does not exist"),
        ({"minvCpus": 1}, "minvCpus cannot be updated on a Fargate compute environment"),
    ],
)
def test_update_refuses_what_aws_refuses(
    batch: Any, changes: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ClientError) as excinfo:
        batch.update_compute_environment(computeEnvironment="env", computeResources=changes)
    assert expected in error_of(excinfo)[1]
    assert resources(batch)["maxvCpus"] == 256


def test_a_queue_is_deleted_only_once_disabled(batch: Any) -> None:
    with pytest.raises(ClientError) as excinfo:
        batch.delete_job_queue(jobQueue="queue")
    assert error_of(excinfo)[0] == "ClientException"
    assert batch.describe_job_queues(jobQueues=["queue"])["jobQueues"]
    batch.update_job_queue(jobQueue="queue", state="DISABLED")
    batch.delete_job_queue(jobQueue="queue")
    assert batch.describe_job_queues(jobQueues=["queue"])["jobQueues"] == []


def test_an_environment_is_deleted_only_once_disabled_and_unused(batch: Any) -> None:
    with pytest.raises(ClientError) as excinfo:
        batch.delete_compute_environment(computeEnvironment="env")
    assert "must be DISABLED" in error_of(excinfo)[1]
    batch.update_compute_environment(computeEnvironment="env", state="DISABLED")
    with pytest.raises(ClientError) as excinfo:
        batch.delete_compute_environment(computeEnvironment="env")
    assert error_of(excinfo) == (
        "ClientException",
        "Cannot delete, found existing JobQueue relationship: queue",
    )
    batch.update_job_queue(jobQueue="queue", state="DISABLED")
    batch.delete_job_queue(jobQueue="queue")
    batch.delete_compute_environment(computeEnvironment="env")
    assert (
        batch.describe_compute_environments(computeEnvironments=["env"])["computeEnvironments"]
        == []
    )


def test_uninstall_gives_batch_back_to_moto(batch: Any) -> None:
    uninstall_extensions()
    batch.delete_job_queue(jobQueue="queue")
    batch.update_compute_environment(computeEnvironment="env", computeResources={"maxvCpus": 8})
    assert resources(batch)["maxvCpus"] == 256
    install_extensions()


def register(client: Any, memory: str) -> str:
    return client.register_job_definition(
        jobDefinitionName="job",
        type="container",
        platformCapabilities=["FARGATE"],
        containerProperties={
            "image": "busybox",
            "resourceRequirements": [
                {"type": "VCPU", "value": "1"},
                {"type": "MEMORY", "value": memory},
            ],
        },
    )["jobDefinitionArn"]


def test_submit_job_runs_the_latest_active_revision_of_an_arn_without_revision(
    batch: Any,
) -> None:
    first = register(batch, "2048")
    second = register(batch, "4096")
    register(batch, "8192")
    batch.deregister_job_definition(jobDefinition=second.replace(":2", ":3"))
    unrevised = first.rsplit(":", 1)[0]
    job = batch.submit_job(jobName="shard-0", jobQueue="queue", jobDefinition=unrevised)
    described = batch.describe_jobs(jobs=[job["jobId"]])["jobs"][0]
    assert described["jobDefinition"] == second


def test_an_unknown_job_definition_is_still_refused(batch: Any) -> None:
    with pytest.raises(ClientError, match="does not exist"):
        batch.submit_job(
            jobName="shard-0",
            jobQueue="queue",
            jobDefinition=f"arn:aws:batch:{REGION}:{ACCOUNT}:job-definition/missing",
        )
