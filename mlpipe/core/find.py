"""Not found, said once per service: a read that finds nothing is `None`, a delete of what is
already gone is done.

Each service names "not found" its own way (IAM `NoSuchEntity`, SQS
`AWS.SimpleQueueService.NonExistentQueue`, SageMaker a `ValidationException` whose message
says "Could not find"); the table below lists them once, and `find`/`forget` are the only
places that catch them. The service is the client's own (`client.meta.service_model`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

from mlpipe.core.errors import error_code

# service -> error codes meaning "no such resource" (a code: any message; "code:text": only
# when the message contains text).
NOT_FOUND: Mapping[str, frozenset[str]] = {
    "s3": frozenset(
        {
            "404",
            "NoSuchBucket",
            "NoSuchKey",
            "NoSuchTagSet",
            "NoSuchLifecycleConfiguration",
            "NoSuchBucketPolicy",
            "ServerSideEncryptionConfigurationNotFoundError",
            "NoSuchPublicAccessBlockConfiguration",
            "OwnershipControlsNotFoundError",
        }
    ),
    "iam": frozenset({"NoSuchEntity"}),
    "ec2": frozenset(
        {
            "InvalidVpcID.NotFound",
            "InvalidSubnetID.NotFound",
            "InvalidGroup.NotFound",
            "InvalidGroupId.NotFound",
            "InvalidVpcEndpointId.NotFound",
            "InvalidRouteTableID.NotFound",
            "InvalidNetworkInterfaceID.NotFound",
            "InvalidFlowLogId.NotFound",
        }
    ),
    "kms": frozenset({"NotFoundException"}),
    "ssm": frozenset({"ParameterNotFound", "InvalidResourceId"}),
    "dynamodb": frozenset({"ResourceNotFoundException", "TableNotFoundException"}),
    "lambda": frozenset({"ResourceNotFoundException"}),
    "kinesis": frozenset({"ResourceNotFoundException"}),
    "sqs": frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}),
    "apigateway": frozenset({"NotFoundException"}),
    # SageMaker's Describe* answer a ValidationException "Could not find ..." (no own code).
    "sagemaker": frozenset({"ResourceNotFound", "ValidationException:Could not find"}),
    "stepfunctions": frozenset({"StateMachineDoesNotExist", "ResourceNotFound"}),
    "glue": frozenset({"EntityNotFoundException"}),
    "athena": frozenset({"ResourceNotFoundException", "InvalidRequestException:not found"}),
    "cloudwatch": frozenset({"ResourceNotFound", "ResourceNotFoundException"}),
    "logs": frozenset({"ResourceNotFoundException"}),
    "sns": frozenset({"NotFound", "NotFoundException"}),
    "events": frozenset({"ResourceNotFoundException"}),
    "batch": frozenset(),  # Describe* answer empty lists
    "ecr": frozenset(
        {
            "RepositoryNotFoundException",
            "LifecyclePolicyNotFoundException",
            "ImageNotFoundException",
            "RepositoryPolicyNotFoundException",
        }
    ),
    "wafv2": frozenset({"WAFNonexistentItemException"}),
    "application-autoscaling": frozenset({"ObjectNotFoundException"}),
    "sts": frozenset(),
}


def not_found(service: str, exc: BaseException) -> bool:
    """`exc` says the resource a call of `service` named does not exist."""
    if not isinstance(exc, ClientError):
        return False
    code = error_code(exc)
    for entry in NOT_FOUND[service]:
        want, _, text = entry.partition(":")
        if code == want and text in str(exc):
            return True
    return False


def find(client: Any, operation: str, /, **params: Any) -> dict[str, Any] | None:
    """`client.operation(**params)`'s answer, or None when what it names does not exist."""
    try:
        answer: dict[str, Any] = getattr(client, operation)(**params)
    except ClientError as exc:
        if not_found(client.meta.service_model.service_name, exc):
            return None
        raise
    return answer


def forget(client: Any, operation: str, /, **params: Any) -> None:
    """A delete: what is already gone counts as deleted (a retried delete, a race)."""
    find(client, operation, **params)
