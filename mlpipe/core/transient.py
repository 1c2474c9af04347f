"""Every transient error mlpipe retries, by name: AWS documents each as passing on its own.

`Context.eventually(fn, *names)` retries `fn` only while it fails with one of the named entries:
the service's error code, raised by one of the entry's operations, with the entry's message
fragment. Throttling is botocore's (adaptive retry mode); nothing else is retried.
"""

from __future__ import annotations

from dataclasses import dataclass

from botocore.exceptions import ClientError

from mlpipe.core.errors import error_code

IAM_CONSISTENCY = (
    "https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html"
    "#troubleshoot_general_eventual-consistency"
)


@dataclass(frozen=True)
class Transient:
    name: str
    service: str
    operations: tuple[str, ...]
    code: str
    message: str  # a fragment of the error message; "" for any
    doc: str  # where AWS says it passes

    def matches(self, exc: BaseException) -> bool:
        if not isinstance(exc, ClientError) or error_code(exc) != self.code:
            return False
        if getattr(exc, "operation_name", None) not in self.operations:
            return False
        return self.message in str(exc)


TRANSIENT: tuple[Transient, ...] = (
    Transient(
        "lambda-role-not-assumable",
        "lambda",
        ("CreateFunction", "UpdateFunctionConfiguration"),
        "InvalidParameterValueException",
        "role",  # "The role defined for the function cannot be assumed by Lambda."
        IAM_CONSISTENCY,
    ),
    Transient(
        "lambda-mapping-role-not-ready",
        "lambda",
        ("CreateEventSourceMapping",),
        "InvalidParameterValueException",
        "role",  # "The provided execution role does not have permissions to call ..."
        IAM_CONSISTENCY,
    ),
    Transient(
        "lambda-mapping-in-use",
        "lambda",
        ("UpdateEventSourceMapping", "DeleteEventSourceMapping"),
        "ResourceInUseException",
        "",
        "https://docs.aws.amazon.com/lambda/latest/api/API_UpdateEventSourceMapping.html",
    ),
    Transient(
        "sqs-queue-deleted-recently",
        "sqs",
        ("CreateQueue",),
        "AWS.SimpleQueueService.QueueDeletedRecently",
        "",
        "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_CreateQueue.html",
    ),
    Transient(
        "sqs-queue-deleted-recently-json",  # the same error under SQS's JSON protocol
        "sqs",
        ("CreateQueue",),
        "QueueDeletedRecently",
        "",
        "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_CreateQueue.html",
    ),
    Transient(
        "states-role-not-assumable",
        "stepfunctions",
        ("CreateStateMachine", "UpdateStateMachine"),
        "AccessDeniedException",
        "",
        IAM_CONSISTENCY,
    ),
    Transient(
        "states-logging-role-not-ready",
        "stepfunctions",
        ("CreateStateMachine", "UpdateStateMachine"),
        "InvalidLoggingConfiguration",
        "",
        IAM_CONSISTENCY,
    ),
    Transient(
        "apigateway-account-role-not-ready",
        "apigateway",
        ("UpdateAccount",),
        "BadRequestException",
        "role",
        IAM_CONSISTENCY,
    ),
    Transient(
        # "Unable to complete operation due to concurrent modification. Please try again later."
        "apigateway-conflict",
        "apigateway",
        ("CreateDeployment", "CreateStage", "UpdateStage", "DeleteStage", "UpdateRestApi"),
        "ConflictException",
        "try again",
        "https://docs.aws.amazon.com/apigateway/latest/api/CommonErrors.html",
    ),
    Transient(
        # Some API Gateway calls allow one request per many seconds per account, longer than
        # botocore's throttling retries wait ("API Gateway quotas for configuring and running a
        # REST API").
        "apigateway-too-many-requests",
        "apigateway",
        ("CreateRestApi", "DeleteRestApi", "CreateDeployment", "CreateStage", "UpdateStage"),
        "TooManyRequestsException",
        "",
        "https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html",
    ),
    Transient(
        "glue-role-not-assumable",
        "glue",
        ("CreateCrawler",),
        "InvalidInputException",
        "assume",
        IAM_CONSISTENCY,
    ),
    Transient(
        "glue-crawler-running",
        "glue",
        ("UpdateCrawler", "DeleteCrawler"),
        "CrawlerRunningException",
        "",
        "https://docs.aws.amazon.com/glue/latest/webapi/API_UpdateCrawler.html",
    ),
    Transient(
        "ec2-group-not-visible",
        "ec2",
        ("DescribeSecurityGroups",),
        "InvalidGroup.NotFound",
        "",
        "https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html",
    ),
    Transient(
        # A deleted function's network interfaces stay until Lambda releases them (minutes);
        # until then its subnets and security groups have "a dependent object". Retried only
        # while Lambda interfaces are found there (hashicorp/terraform-provider-aws#10329).
        "ec2-lambda-interfaces-being-released",
        "ec2",
        ("DeleteSubnet", "DeleteSecurityGroup", "DeleteVpc"),
        "DependencyViolation",
        "",
        "https://docs.aws.amazon.com/lambda/latest/dg/configuration-vpc.html",
    ),
    Transient(
        # "If you've just created a resource that you're using in this operation, you might
        # just need to wait a few minutes."
        "wafv2-entity-unavailable",
        "wafv2",
        ("AssociateWebACL",),
        "WAFUnavailableEntityException",
        "",
        "https://docs.aws.amazon.com/waf/latest/APIReference/API_AssociateWebACL.html",
    ),
    Transient(
        "s3-bucket-not-visible",
        "s3",
        ("HeadBucket",),
        "404",
        "",
        "https://docs.aws.amazon.com/AmazonS3/latest/userguide/Welcome.html#ConsistencyModel",
    ),
    Transient(
        "sagemaker-role-not-assumable",
        "sagemaker",
        ("CreateModel",),
        "ValidationException",
        "Could not assume role",
        IAM_CONSISTENCY,
    ),
    Transient(
        # The role's new permission on the model bucket or key has not propagated yet.
        "sagemaker-model-data-not-accessible",
        "sagemaker",
        ("CreateModel",),
        "ValidationException",
        "Could not access model data",
        IAM_CONSISTENCY,
    ),
    Transient(
        # "When you call CreateEndpoint, a load call is made to DynamoDB to verify that your
        # endpoint configuration exists ... eventually consistent ... retry" (API reference).
        "sagemaker-endpoint-config-not-visible",
        "sagemaker",
        ("CreateEndpoint", "UpdateEndpoint"),
        "ValidationException",
        "Could not find endpoint configuration",
        "https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateEndpoint.html",
    ),
    Transient(
        # Right after a table becomes ACTIVE its continuous backups are not available yet.
        "dynamodb-backups-unavailable",
        "dynamodb",
        ("UpdateContinuousBackups",),
        "ContinuousBackupsUnavailableException",
        "",
        "https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_UpdateContinuousBackups.html",
    ),
)

BY_NAME: dict[str, Transient] = {t.name: t for t in TRANSIENT}


def named(names: tuple[str, ...]) -> tuple[Transient, ...]:
    unknown = [n for n in names if n not in BY_NAME]
    if unknown or not names:
        raise ValueError(f"not in the table of transient errors: {', '.join(unknown) or '()'}")
    return tuple(BY_NAME[n] for n in names)
