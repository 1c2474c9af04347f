"""The two Lambda functions (preprocess behind the API, stream-processor on Kinesis) and their
log groups.

Code: each function's package directory (`lambdas/<package>`) is zipped deterministically
(entries sorted, timestamps 1980-01-01, permissions 0644, no bytecode, stored uncompressed so
the bytes do not depend on the zlib build) with the package's files at the zip root, so the
handler is `handler.handler`, and beside them the shared modules of `lambdas/common` (which the
handler imports by their top-level names). The content hash, base64(sha256(zip)), is compared
with the function's `CodeSha256`: unchanged code makes no UpdateFunctionCode call.

Every function runs in the pipeline's private subnets, traces with X-Ray (Active), encrypts its
environment with the pipeline key and has reserved concurrency from the spec.
"""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import lambdas as lambda_sources
from mlpipe.core.context import Context
from mlpipe.core.diff import Diff, diff
from mlpipe.core.errors import MlpipeError
from mlpipe.core.find import find, forget
from mlpipe.core.resource import Observed, Outputs, Refs, Resource
from mlpipe.core.wait import wait_for
from mlpipe.resources import network
from mlpipe.resources.iam import role_key
from mlpipe.resources.kms import KEY
from mlpipe.resources.logs import LogGroup

PREPROCESS = "preprocess"
STREAM_PROCESSOR = "stream-processor"
PURPOSES = (PREPROCESS, STREAM_PROCESSOR)
HANDLER = "handler.handler"
SOURCES = Path(lambda_sources.__file__).resolve().parent
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
# SageMaker accepts request payloads up to 6 MB; the stream processor packs records below this.
MAX_PAYLOAD_BYTES = 5_000_000
# InvalidParameterValueException while a new role propagates: "The role defined for the
# function cannot be assumed by Lambda", "The provided execution role does not have
# permissions to call CreateNetworkInterface on EC2", "... SendMessage on SQS".

# Properties UpdateFunctionConfiguration sets (the rest have their own calls).
CONFIGURATION = (
    "Runtime",
    "Handler",
    "Role",
    "Description",
    "MemorySize",
    "Timeout",
    "Environment",
    "KMSKeyArn",
    "TracingConfig",
    "VpcConfig",
)


def function_key(purpose: str) -> str:
    return f"lambda:{purpose}"


def log_group_key(purpose: str) -> str:
    return f"logs:lambda-{purpose}"


def function_arn(ctx: Context, purpose: str) -> str:
    """The function's ARN, derived from its name (known before it exists)."""
    aws = ctx.aws
    return (
        f"arn:{aws.partition}:lambda:{aws.region}:{aws.account}:function:"
        f"{ctx.names.function(purpose)}"
    )


def package_files(source: Path) -> dict[str, Path]:
    """A function's deployment package: name in the zip → file (its own files, then the shared
    modules at the root)."""
    files = {
        path.relative_to(source).as_posix(): path
        for path in source.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }
    for path in lambda_sources.common_modules():
        if files.setdefault(path.name, path) != path:
            raise MlpipeError(f"{source / path.name} would hide the shared module {path}")
    return files


def build_zip(source: Path) -> bytes:
    """The deployment package of a source directory, byte-for-byte reproducible."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, path in sorted(package_files(source).items()):
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.create_system = 3  # Unix, so the permission bits below are honoured
            info.external_attr = 0o100644 << 16
            info.compress_type = zipfile.ZIP_STORED
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def code_sha256(package: bytes) -> str:
    """Lambda's `CodeSha256` of a package: base64 of its SHA-256 digest."""
    return base64.b64encode(hashlib.sha256(package).digest()).decode()


def environment(ctx: Context, purpose: str) -> dict[str, str]:
    """The variables each handler reads (see the handlers' module docstrings)."""
    spec, names = ctx.spec, ctx.names
    variables = {
        "ENDPOINT_NAME": names.endpoint,
        "TABLE_NAME": names.predictions_table,
        "ACTIVE_VERSION_PARAM": names.active_version_param,
        "DEPLOYMENT_PARAM": names.deployment_param,
        "SSM_CACHE_TTL_SECONDS": str(spec.lambdas.ssm_cache_ttl_seconds),
        "PREDICTION_TTL_DAYS": str(spec.storage.predictions_table.ttl_days),
    }
    if spec.lambdas.feature_count is not None:
        variables["FEATURE_COUNT"] = str(spec.lambdas.feature_count)
    if purpose == PREPROCESS and spec.api.cache.enabled:
        # The handler refuses a request whose cache key header does not match its body.
        variables["CACHE_KEY_HEADER"] = spec.api.cache.key_header
    if purpose == STREAM_PROCESSOR:
        variables["MAX_PAYLOAD_BYTES"] = str(MAX_PAYLOAD_BYTES)
        # With an SQS endpoint in the VPC, the handler sends each malformed record with its
        # reason to the on-failure queue (the role's sqs:SendMessage on it, as the event source
        # mapping's destination needs). Otherwise, or when that send fails, malformed records
        # are reported, so that after the retries the mapping sends their location there.
        if "sqs" in spec.network.interface_endpoints:
            aws = ctx.aws
            suffix = "amazonaws.com.cn" if aws.partition == "aws-cn" else "amazonaws.com"
            variables["FAILURE_QUEUE_URL"] = (
                f"https://sqs.{aws.region}.{suffix}/{aws.account}/{names.stream_dlq}"
            )
        variables["REPORT_MALFORMED"] = "true"
    return variables


# How long Lambda may take to create or update a function (boto3's waiters: 300 polls of 1 s).
FUNCTION_WAIT_SECONDS = 300.0


class Function(Resource):
    kind = "lambda"
    tagging = "lambda"

    def __init__(self, ctx: Context, purpose: str, source: Path | None = None) -> None:
        subnets = tuple(network.subnet_keys(ctx.spec))
        super().__init__(
            ctx,
            purpose,
            ctx.names.function(purpose),
            depends_on=(
                KEY,
                role_key(purpose),
                log_group_key(purpose),
                network.SG_LAMBDA,
                *subnets,
            ),
        )
        self.purpose = purpose
        self.source = source or SOURCES / purpose.replace("-", "_")
        self.subnets = subnets

    @property
    def settings(self) -> Any:
        return getattr(self.ctx.spec.lambdas, self.purpose.replace("-", "_"))

    @cached_property
    def package(self) -> bytes:
        return build_zip(self.source)

    def read(self) -> Observed | None:
        found = self.find("lambda", "get_function", FunctionName=self.physical)
        if found is None:
            return None
        lam = self.client("lambda")
        config = found["Configuration"]
        vpc = config.get("VpcConfig") or {}
        tags = found.get("Tags") or {}
        concurrency = lam.get_function_concurrency(FunctionName=self.physical)
        state = {
            "Runtime": config.get("Runtime"),
            "Handler": config.get("Handler"),
            "Role": config.get("Role"),
            "Description": config.get("Description", ""),
            "MemorySize": config.get("MemorySize"),
            "Timeout": config.get("Timeout"),
            "Environment": {"Variables": (config.get("Environment") or {}).get("Variables", {})},
            "KMSKeyArn": config.get("KMSKeyArn"),
            "TracingConfig": {"Mode": (config.get("TracingConfig") or {}).get("Mode")},
            # VpcId is derived from the subnets, so it is not compared.
            "VpcConfig": {
                "SubnetIds": sorted(vpc.get("SubnetIds") or []),
                "SecurityGroupIds": sorted(vpc.get("SecurityGroupIds") or []),
            },
            "CodeSha256": config.get("CodeSha256"),
            "ReservedConcurrentExecutions": concurrency.get("ReservedConcurrentExecutions"),
            "Tags": tags,
        }
        outputs = {"name": self.physical, "arn": config["FunctionArn"]}
        return Observed(state, outputs, self.ctx.owns(tags))

    def desired(self, refs: Refs) -> dict[str, Any]:
        settings = self.settings
        # Once per plan (the planner computes desired once), for all functions, before anything
        # is written: the plan fails.
        if self.purpose == PURPOSES[0]:
            check_reserved_concurrency(self.ctx)
        subnet_ids = [refs(key, "id") for key in self.subnets]
        return {
            "Runtime": self.ctx.spec.lambdas.runtime,
            "Handler": HANDLER,
            "Role": refs(role_key(self.purpose), "arn"),
            "Description": f"mlpipe {self.ctx.names.pipeline_id}: {self.purpose}",
            "MemorySize": settings.memory_mb,
            "Timeout": settings.timeout_seconds,
            "Environment": {"Variables": environment(self.ctx, self.purpose)},
            "KMSKeyArn": refs(KEY, "arn"),
            "TracingConfig": {"Mode": "Active"},
            "VpcConfig": {
                "SubnetIds": sorted(subnet_ids, key=str),
                "SecurityGroupIds": [refs(network.SG_LAMBDA, "id")],
            },
            "CodeSha256": code_sha256(self.package),
            "ReservedConcurrentExecutions": settings.reserved_concurrency,
            "Tags": self.tags,
        }

    def diff(self, current: Mapping[str, Any], desired: Mapping[str, Any]) -> Diff:
        # Variables are compared whole: one set behind mlpipe's back is drift too.
        return diff(current, desired, exact=("Tags", "Environment.Variables"))

    def _wait(self, status: str, pending: str, target: str) -> None:
        """Until Lambda has finished creating (`State`) or updating (`LastUpdateStatus`) the
        function: attaching it to the VPC takes a while (https://docs.aws.amazon.com/lambda/
        latest/dg/functions-states.html); bounded like boto3's function_active_v2 waiter."""
        lam = self.client("lambda")

        def refresh() -> tuple[None, str]:
            config = lam.get_function_configuration(FunctionName=self.physical)
            return None, str(config.get(status) or target)

        wait_for(
            refresh,
            pending={pending},
            target={target},
            timeout=FUNCTION_WAIT_SECONDS,
            clock=self.ctx.clock,
            what=f"function {self.physical}",
            progress=lambda why, _elapsed: self.ctx.progress(self.key, f"waiting: {why}"),
        )

    def create(self, desired: dict[str, Any]) -> Outputs:
        lam = self.client("lambda")
        params = {key: desired[key] for key in CONFIGURATION}
        created = self.ctx.eventually(
            lambda: lam.create_function(
                FunctionName=self.physical,
                Code={"ZipFile": self.package},
                PackageType="Zip",
                Publish=False,
                Tags=desired["Tags"],
                **params,
            ),
            "lambda-role-not-assumable",
        )
        self._wait("State", "Pending", "Active")
        self._set_concurrency(desired["ReservedConcurrentExecutions"])
        return {"name": self.physical, "arn": created["FunctionArn"]}

    def _set_concurrency(self, reserved: int | None) -> None:
        if reserved is not None:
            self.client("lambda").put_function_concurrency(
                FunctionName=self.physical, ReservedConcurrentExecutions=reserved
            )

    def update(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> Outputs:
        lam = self.client("lambda")
        changed = {key: desired[key] for key in CONFIGURATION if changes.touches(key)}
        if changed:
            self.ctx.eventually(
                lambda: lam.update_function_configuration(FunctionName=self.physical, **changed),
                "lambda-role-not-assumable",
            )
            self._wait("LastUpdateStatus", "InProgress", "Successful")
        if changes.touches("CodeSha256"):
            lam.update_function_code(FunctionName=self.physical, ZipFile=self.package)
            self._wait("LastUpdateStatus", "InProgress", "Successful")
        if changes.touches("ReservedConcurrentExecutions"):
            self._set_concurrency(desired["ReservedConcurrentExecutions"])
        return observed.outputs

    def delete(self, observed: Observed) -> None:
        """Delete, then wait for Lambda to release the function's network interfaces: it needs
        the execution role for that, so the role (deleted after) must outlive them; without it
        they stay and block the subnets and security group
        (https://docs.aws.amazon.com/lambda/latest/dg/configuration-vpc.html)."""
        forget(self.client("lambda"), "delete_function", FunctionName=self.physical)
        groups = observed.state["VpcConfig"]["SecurityGroupIds"]
        network.wait_for_lambda_interfaces(self.ctx, self.key, groups)


def check_reserved_concurrency(ctx: Context) -> None:
    """Refuse reservations the account cannot hold: Lambda keeps at least 100 of the account's
    concurrency unreserved (all of it below a quota of 100), https://docs.aws.amazon.com/lambda/
    latest/dg/configuration-concurrency.html. The functions' own reservations count as free."""
    spec = ctx.spec.lambdas
    wanted = {
        purpose: settings.reserved_concurrency
        for purpose, settings in (
            (PREPROCESS, spec.preprocess),
            (STREAM_PROCESSOR, spec.stream_processor),
        )
        if settings.reserved_concurrency
    }
    if not wanted:
        return
    lam = ctx.aws.client("lambda")
    limit = lam.get_account_settings()["AccountLimit"]
    quota, unreserved = limit["ConcurrentExecutions"], limit["UnreservedConcurrentExecutions"]
    held = 0
    for purpose in wanted:
        name = ctx.names.function(purpose)
        found = find(lam, "get_function_concurrency", FunctionName=name) or {}
        held += found.get("ReservedConcurrentExecutions") or 0
    keep = min(100, quota)
    need = sum(wanted.values())
    if need > unreserved + held - keep:
        asked = " + ".join(f"{p.replace('-', '_')} {n}" for p, n in wanted.items())
        raise MlpipeError(
            f"lambdas.*.reserved_concurrency: {asked} = {need} does not fit the account's "
            f"Lambda concurrency (quota {quota}, {unreserved + held} available to these "
            f"functions, of which AWS keeps {keep} unreserved): lower or remove "
            "reserved_concurrency, or ask for a higher quota"
        )


def resources(ctx: Context) -> list[Resource]:
    found: list[Resource] = []
    for purpose in PURPOSES:
        found.append(
            LogGroup(
                ctx,
                f"lambda-{purpose}",
                ctx.names.function_log_group(purpose),
                ctx.spec.lambdas.log_retention_days,
            )
        )
        found.append(Function(ctx, purpose))
    return found
