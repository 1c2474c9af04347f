"""Every physical name and ARN of the pipeline, derived from `pipeline` + `environment` here
and nowhere else; names are checked against each service's naming rules when the spec is loaded.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

T = TypeVar("T")

# Worst cases used when checking name lengths before the account and region are known.
PLACEHOLDER_ACCOUNT = "123456789012"
LONGEST_REGION = "ap-southeast-5x"


MODEL_NAME_LIMIT = 63  # SageMaker CreateModel: ModelName, 1 to 63 characters


class _Derived(Generic[T]):
    """A read-only string attribute derived from the instance: a typed `property(lambda ...)`."""

    def __init__(self, derive: Callable[[T], str]) -> None:
        self._derive = derive

    def __get__(self, instance: T, owner: type[T] | None = None) -> str:
        return self._derive(instance)


class _Name(_Derived["Names"]):
    """A name derived from the pipeline's other names."""


class _Arn(_Derived["Arns"]):
    """An ARN derived from a name."""


@dataclass(frozen=True)
class Names:
    """Every physical name of the pipeline, derived from pipeline + environment."""

    pipeline: str
    environment: str
    account: str = PLACEHOLDER_ACCOUNT
    region: str = LONGEST_REGION

    @property
    def pipeline_id(self) -> str:
        return f"{self.pipeline}-{self.environment}"

    def _n(self, suffix: str) -> str:
        return f"{self.pipeline_id}-{suffix}"

    # Security and storage
    kms_alias = _Name(lambda self: f"alias/{self.pipeline_id}")
    model_bucket = _Name(lambda self: self._n(f"models-{self.account}-{self.region}"))
    data_bucket = _Name(lambda self: self._n(f"data-{self.account}-{self.region}"))
    access_log_bucket = _Name(lambda self: self._n(f"logs-{self.account}-{self.region}"))
    predictions_table = _Name(lambda self: self._n("predictions"))

    # Parameter Store registry
    ssm_prefix = _Name(lambda self: f"/{self.pipeline}/{self.environment}")
    active_version_param = _Name(lambda self: f"{self.ssm_prefix}/models/active-version")
    deployment_param = _Name(lambda self: f"{self.ssm_prefix}/models/deployment")
    lock_param = _Name(lambda self: f"{self.ssm_prefix}/models/lock")

    def metadata_param(self, version: str) -> str:
        return f"{self.ssm_prefix}/models/versions/{version}/metadata"

    def role(self, purpose: str) -> str:
        return self._n(purpose)

    role_path = _Name(lambda self: f"/mlpipe/{self.pipeline_id}/")

    # Serving
    endpoint = _Name(lambda self: self._n("endpoint"))

    def model(self, version: str) -> str:
        """The SageMaker model of a version, one per version and at most 63 characters: dots
        become hyphens; when anything else had to change (`v1.0.0-rc.1` and `v1.0.0-rc-1`
        sanitise alike) or the name is too long, a hash of the version is appended."""
        name = self._n("model-" + re.sub(r"[^a-zA-Z0-9]", "-", version))
        if re.fullmatch(r"[a-zA-Z0-9.]+", version) and len(name) <= MODEL_NAME_LIMIT:
            return name
        digest = hashlib.sha256(version.encode()).hexdigest()[:10]
        return f"{name[: MODEL_NAME_LIMIT - len(digest) - 1].rstrip('-')}-{digest}"

    def endpoint_config(self, content: str) -> str:
        return self.endpoint_config_prefix + hashlib.sha256(content.encode()).hexdigest()[:12]

    endpoint_config_prefix = _Name(lambda self: self._n("config-"))
    model_prefix = _Name(lambda self: self._n("model-"))

    def function(self, purpose: str) -> str:
        return self._n(purpose)

    def function_log_group(self, purpose: str) -> str:
        return f"/aws/lambda/{self.function(purpose)}"

    vpc = _Name(lambda self: self._n("vpc"))
    private_route_table = _Name(lambda self: self._n("private-routes"))

    def subnet(self, index: int) -> str:
        return self._n(f"private-{index}")

    def security_group(self, purpose: str) -> str:
        return self._n(f"{purpose}-sg")

    flow_log_group = _Name(lambda self: f"/aws/vpc-flow-logs/{self.pipeline_id}")

    def vpc_endpoint(self, service: str) -> str:
        return self._n("vpce-" + service.replace(".", "-"))

    api = _Name(lambda self: self._n("inference-api"))
    stream = _Name(lambda self: self._n("inference-stream"))
    stream_dlq = _Name(lambda self: self._n("stream-failures"))
    api_key = _Name(lambda self: self._n("api-key"))
    web_acl = _Name(lambda self: self._n("api-waf"))
    usage_plan = _Name(lambda self: self._n("usage-plan"))
    # Statement id of the Lambda permission that lets the API invoke the preprocess function.
    api_invoke_sid = _Name(lambda self: self._n("api-invoke"))

    # Batch and orchestration
    batch_repository = _Name(lambda self: self._n("batch"))
    compute_environment = _Name(lambda self: self._n("batch-compute"))
    job_queue = _Name(lambda self: self._n("batch-queue"))
    job_definition = _Name(lambda self: self._n("batch-inference"))
    batch_log_group = _Name(lambda self: f"/aws/batch/{self.pipeline_id}")
    state_machine = _Name(lambda self: self._n("batch-workflow"))
    workflow_log_group = _Name(lambda self: f"/aws/vendedlogs/states/{self.pipeline_id}")
    schedule_rule = _Name(lambda self: self._n("batch-schedule"))

    # Monitoring and analytics
    alert_topic = _Name(lambda self: self._n("alerts"))
    dashboard = _Name(lambda self: self._n("metrics"))

    def alarm(self, purpose: str) -> str:
        return self._n(purpose)

    glue_database = _Name(lambda self: self.pipeline_id.replace("-", "_"))
    crawler = _Name(lambda self: self._n("predictions-crawler"))
    workgroup = _Name(lambda self: self._n("analytics"))

    def problems(self, versions: Iterable[str]) -> list[str]:
        """Names that break a service's rules, checked with the worst-case account/region, for
        a pipeline serving the model `versions`."""
        rules: list[tuple[str, str, int, str]] = [
            ("S3 bucket", self.model_bucket, 63, r"[a-z0-9][a-z0-9.-]*[a-z0-9]"),
            ("S3 bucket", self.data_bucket, 63, r"[a-z0-9][a-z0-9.-]*[a-z0-9]"),
            ("DynamoDB table", self.predictions_table, 255, r"[a-zA-Z0-9_.-]+"),
            ("SageMaker endpoint", self.endpoint, 63, r"[a-zA-Z0-9](-*[a-zA-Z0-9])*"),
            ("SageMaker endpoint config", self.endpoint_config(""), 63, r"[a-zA-Z0-9-]+"),
            ("Lambda function", self.function("stream-processor"), 64, r"[a-zA-Z0-9-_]+"),
            ("IAM role", self.role("stepfunctions-role"), 64, r"[\w+=,.@-]+"),
            ("Kinesis stream", self.stream, 128, r"[a-zA-Z0-9_.-]+"),
            ("Batch compute environment", self.compute_environment, 128, r"[a-zA-Z0-9_-]+"),
            ("Step Functions state machine", self.state_machine, 80, r"[a-zA-Z0-9_-]+"),
            ("EventBridge rule", self.schedule_rule, 64, r"[\.\-_A-Za-z0-9]+"),
            ("Athena workgroup", self.workgroup, 128, r"[a-zA-Z0-9._-]+"),
            ("Glue crawler", self.crawler, 255, r"[\w.-]+"),
        ]
        rules += [
            ("SageMaker model", self.model(v), 63, r"[a-zA-Z0-9](-*[a-zA-Z0-9])*") for v in versions
        ]
        found = []
        for what, name, limit, pattern in rules:
            if len(name) > limit:
                found.append(
                    f"{what} name {name!r} would be {len(name)} characters, over AWS's limit of "
                    f"{limit}: shorten pipeline or environment"
                )
            elif not re.fullmatch(pattern, name):
                found.append(f"{what} name {name!r} has characters AWS does not allow")
        return found


class Account(Protocol):
    """Where the pipeline lives, as `mlpipe.core.clients.Aws` tells it."""

    @property
    def partition(self) -> str: ...

    @property
    def region(self) -> str: ...

    @property
    def account(self) -> str: ...


class Located(Protocol):
    """What ARNs derive from: the account and the names (a run's `Context` has both)."""

    @property
    def aws(self) -> Account: ...

    @property
    def names(self) -> Names: ...


@dataclass(frozen=True)
class Arns:
    """ARNs of the pipeline's resources, derived from their names (known before they exist)."""

    ctx: Located

    @property
    def names(self) -> Names:
        return self.ctx.names

    def arn(self, service: str, resource: str, region: bool = True, account: bool = True) -> str:
        """An ARN of this partition, in this region and account unless told otherwise."""
        aws = self.ctx.aws
        return (
            f"arn:{aws.partition}:{service}:{aws.region if region else ''}:"
            f"{aws.account if account else ''}:{resource}"
        )

    def bucket(self, name: str, path: str = "") -> str:
        return self.arn("s3", name + path, region=False, account=False)

    def log_group(self, name: str) -> str:
        return self.arn("logs", f"log-group:{name}:*")

    def parameter(self, name: str) -> str:
        return self.arn("ssm", f"parameter{name}")

    def role(self, purpose: str) -> str:
        return self.arn("iam", f"role{self.names.role_path}{self.names.role(purpose)}", False)

    table = _Arn(lambda self: self.arn("dynamodb", f"table/{self.names.predictions_table}"))
    endpoint = _Arn(lambda self: self.arn("sagemaker", f"endpoint/{self.names.endpoint.lower()}"))
    stream = _Arn(lambda self: self.arn("kinesis", f"stream/{self.names.stream}"))
    stream_dlq = _Arn(lambda self: self.arn("sqs", self.names.stream_dlq))
    topic = _Arn(lambda self: self.arn("sns", self.names.alert_topic))
    state_machine = _Arn(
        lambda self: self.arn("states", f"stateMachine:{self.names.state_machine}")
    )
    job_queue = _Arn(lambda self: self.arn("batch", f"job-queue/{self.names.job_queue}"))
    job_definition = _Arn(
        lambda self: self.arn("batch", f"job-definition/{self.names.job_definition}")
    )

    def ecr_repository(self, image: str) -> str:
        """The repository ARN of an image URI; an image without a registry is this account's."""
        match = re.match(r"^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com[^/]*/([^:@]+)", image)
        if match:
            account, region, repo = match.groups()
            return f"arn:{self.ctx.aws.partition}:ecr:{region}:{account}:repository/{repo}"
        return self.arn("ecr", f"repository/{re.split(r'[:@]', image)[0]}")

    def image(self, image: str) -> str:
        """The URI of the image to run: a bare tag is in the pipeline's repository; one named
        without a registry is in this account's ECR, as `ecr_repository` has it."""
        if "/" not in image and ":" not in image:
            image = f"{self.names.batch_repository}:{image}"
        registry = image.split("/", 1)[0]
        if "/" in image and ("." in registry or ":" in registry or registry == "localhost"):
            return image
        aws = self.ctx.aws
        suffix = ".cn" if aws.partition == "aws-cn" else ""
        return f"{aws.account}.dkr.ecr.{aws.region}.amazonaws.com{suffix}/{image}"
