"""The Lambda functions and their log groups on moto: packaging, configuration, code updates,
drift, the retry while a new role propagates, and delete."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from mlpipe.core.context import Context
from mlpipe.core.errors import MlpipeError
from mlpipe.core.executor import Report, execute
from mlpipe.core.plan import Action, plan_apply, plan_destroy
from mlpipe.core.resource import Resource
from mlpipe.resources import lambdas, network
from mlpipe.resources.iam import role_key
from mlpipe.resources.kms import KEY
from mlpipe.resources.lambdas import (
    PREPROCESS,
    SOURCES,
    STREAM_PROCESSOR,
    Function,
    build_zip,
    code_sha256,
    environment,
    function_key,
)
from tests.resources.serving import (
    apply,
    client,
    destroy,
    foundation,
    needed,
    step_paths,
    with_spec,
)
from tests.support import Shared, build_once, converge, four_step

ROLE_MESSAGE = "The role defined for the function cannot be assumed by Lambda."


def stack(ctx: Context) -> list[Resource]:
    """The functions and the part of the foundation they use: key, roles, subnets, group."""
    return needed(lambdas.resources(ctx), foundation(ctx))


def underneath(ctx: Context) -> list[Resource]:
    """The stack without the functions and their log groups."""
    mine = {r.key for r in lambdas.resources(ctx)}
    return [r for r in stack(ctx) if r.key not in mine]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Shared[Report]:
    return build_once(tmp_path_factory.mktemp("built"), lambda ctx: converge(stack(ctx)))


@pytest.fixture
def applied(ctx: Context, built: Shared[Report]) -> Report:
    """The stack applied: a copy of the account one converge built for the module."""
    return built.restore()


def test_four_step_and_unchanged_code_is_not_uploaded_again(ctx: Context) -> None:
    """The idempotency check, once: the other tests start from `applied` (one converge)."""
    four_step(ctx, stack(ctx))
    # The log holds the converged plan and apply: each function's code was compared, not sent.
    assert ctx.aws.log.count("lambda:UpdateFunctionCode") == 0
    assert ctx.aws.log.count("lambda:GetFunction") == 2


def test_zip_is_reproducible_flat_and_free_of_bytecode(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    shutil.copytree(SOURCES / "preprocess", first)
    shutil.copytree(SOURCES / "preprocess", second)
    (second / "__pycache__").mkdir(exist_ok=True)
    (second / "__pycache__" / "handler.cpython-311.pyc").write_bytes(b"\0bytecode")
    os.utime(second / "handler.py", (1_700_000_000, 1_700_000_000))
    (second / "handler.py").chmod(0o755)

    package = build_zip(first)
    assert package == build_zip(second)
    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        infos = archive.infolist()
    names = [i.filename for i in infos]
    assert names == sorted(names) == ["__init__.py", "handler.py", "inference_common.py"]
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {(i.external_attr >> 16) & 0o777 for i in infos} == {0o644}
    assert code_sha256(package) == base64.b64encode(hashlib.sha256(package).digest()).decode()


def test_functions_run_python311_in_the_vpc_traced_encrypted_with_reserved_concurrency(
    ctx: Context, applied: Report
) -> None:
    out, lam = applied.outputs, client("lambda")
    subnets = sorted(out[k]["id"] for k in network.subnet_keys(ctx.spec))
    expected_concurrency = {PREPROCESS: 50, STREAM_PROCESSOR: 10}
    for purpose in (PREPROCESS, STREAM_PROCESSOR):
        name = ctx.names.function(purpose)
        config = lam.get_function_configuration(FunctionName=name)
        assert config["Runtime"] == "python3.11"
        assert config["Handler"] == "handler.handler"
        assert config["Role"] == out[role_key(purpose)]["arn"]
        assert config["KMSKeyArn"] == out[KEY]["arn"]
        assert config["TracingConfig"] == {"Mode": "Active"}
        assert sorted(config["VpcConfig"]["SubnetIds"]) == subnets and len(subnets) == 2
        assert config["VpcConfig"]["SecurityGroupIds"] == [out[network.SG_LAMBDA]["id"]]
        assert config["CodeSha256"] == code_sha256(build_zip(SOURCES / purpose.replace("-", "_")))
        reserved = lam.get_function_concurrency(FunctionName=name)
        assert reserved["ReservedConcurrentExecutions"] == expected_concurrency[purpose]
        tags = lam.list_tags(Resource=config["FunctionArn"])["Tags"]
        assert tags["mlpipe:pipeline"] == "ml-pipeline-prod"
        assert tags["mlpipe:resource"] == function_key(purpose)
        group = client("logs").describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{name}")[
            "logGroups"
        ][0]
        assert group["logGroupName"] == f"/aws/lambda/{name}"
        assert group["retentionInDays"] == 30
        assert group["kmsKeyId"] == out[KEY]["arn"]


def test_environment_names_what_each_handler_reads(ctx: Context, applied: Report) -> None:
    names = ctx.names
    common = {
        "ENDPOINT_NAME": "ml-pipeline-prod-endpoint",
        "TABLE_NAME": names.predictions_table,
        "ACTIVE_VERSION_PARAM": "/ml-pipeline/prod/models/active-version",
        "DEPLOYMENT_PARAM": "/ml-pipeline/prod/models/deployment",
        "SSM_CACHE_TTL_SECONDS": "30",
        "PREDICTION_TTL_DAYS": "30",
        "FEATURE_COUNT": "30",
    }
    stream_only = {"MAX_PAYLOAD_BYTES": "5000000", "REPORT_MALFORMED": "true"}
    lam = client("lambda")
    preprocess = lam.get_function_configuration(FunctionName=names.function(PREPROCESS))
    stream = lam.get_function_configuration(FunctionName=names.function(STREAM_PROCESSOR))
    cache_key = {"CACHE_KEY_HEADER": "X-Features-Hash"}
    assert preprocess["Environment"]["Variables"] == {**common, **cache_key}
    assert stream["Environment"]["Variables"] == {**common, **stream_only}


def test_with_an_sqs_endpoint_the_stream_handler_sends_malformed_records_itself(
    ctx: Context,
) -> None:
    endpoints = [*ctx.spec.network.interface_endpoints, "sqs"]
    with_sqs = with_spec(ctx, "network", interface_endpoints=endpoints)
    variables = lambdas.environment(with_sqs, STREAM_PROCESSOR)
    url = f"https://sqs.us-east-1.amazonaws.com/123456789012/{ctx.names.stream_dlq}"
    assert variables["FAILURE_QUEUE_URL"] == url
    assert "FAILURE_QUEUE_URL" not in lambdas.environment(ctx, STREAM_PROCESSOR)


def test_feature_count_reaches_both_handlers(ctx: Context, applied: Report) -> None:
    wider = with_spec(ctx, "lambdas", feature_count=4)
    converge(stack(wider))
    for purpose in (PREPROCESS, STREAM_PROCESSOR):
        config = client("lambda").get_function_configuration(
            FunctionName=ctx.names.function(purpose)
        )
        assert config["Environment"]["Variables"]["FEATURE_COUNT"] == "4"


def test_changed_code_is_uploaded_exactly_once(
    ctx: Context, applied: Report, tmp_path: Path
) -> None:
    source = tmp_path / "preprocess"
    shutil.copytree(SOURCES / "preprocess", source)
    with (source / "handler.py").open("a") as handler:
        handler.write("\n# changed\n")
    function = Function(ctx, PREPROCESS, source=source)
    others = [r for r in stack(ctx) if r.key != function.key]

    ctx.aws.log.reset()
    plan = apply([*others, function])
    assert step_paths(plan) == {function.key: (Action.UPDATE, ["CodeSha256"])}
    assert ctx.aws.log.count("lambda:UpdateFunctionCode") == 1
    assert ctx.aws.log.count("lambda:UpdateFunctionConfiguration") == 0
    live = client("lambda").get_function_configuration(FunctionName=function.physical)
    assert live["CodeSha256"] == code_sha256(build_zip(source))
    assert not plan_apply([*others, function]).changes


def test_configuration_drift_is_repaired_in_one_call_and_reserved_concurrency_drift_too(
    ctx: Context, applied: Report
) -> None:
    name = ctx.names.function(PREPROCESS)
    client("lambda").update_function_configuration(
        FunctionName=name,
        TracingConfig={"Mode": "PassThrough"},
        Environment={"Variables": {**environment(ctx, PREPROCESS), "EXTRA": "set by hand"}},
        MemorySize=128,
    )
    stream = ctx.names.function(STREAM_PROCESSOR)
    client("lambda").put_function_concurrency(FunctionName=stream, ReservedConcurrentExecutions=3)

    ctx.aws.log.reset()
    plan = apply(stack(ctx))
    changed = step_paths(plan)
    assert set(changed) == {function_key(PREPROCESS), function_key(STREAM_PROCESSOR)}
    action, paths = changed[function_key(PREPROCESS)]
    assert action is Action.UPDATE
    assert sorted(paths) == [
        "Environment.Variables",
        "MemorySize",
        "TracingConfig.Mode",
    ]
    assert changed[function_key(STREAM_PROCESSOR)] == (
        Action.UPDATE,
        ["ReservedConcurrentExecutions"],
    )
    assert ctx.aws.log.count("lambda:UpdateFunctionConfiguration") == 1
    live = client("lambda").get_function_configuration(FunctionName=name)
    assert live["TracingConfig"] == {"Mode": "Active"} and live["MemorySize"] == 512
    assert live["Environment"]["Variables"] == environment(ctx, PREPROCESS)
    reserved = client("lambda").get_function_concurrency(FunctionName=stream)
    assert reserved["ReservedConcurrentExecutions"] == 10
    assert not plan_apply(stack(ctx)).changes


def _fail_create(ctx: Context, message: str, times: int) -> list[int]:
    """Answer the first `times` CreateFunction calls with InvalidParameterValueException."""
    calls: list[int] = []

    def fail(**_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        calls.append(1)
        if len(calls) > times:
            return None
        error = {"Code": "InvalidParameterValueException", "Message": message}
        return AWSResponse("https://lambda", 400, {}, None), {"Error": error}

    ctx.aws.client("lambda").meta.events.register("before-call.lambda.CreateFunction", fail)
    return calls


def test_create_retries_while_the_new_role_cannot_be_assumed(ctx: Context) -> None:
    converge(underneath(ctx))
    ctx.clock.sleep(60)  # the roles are no longer new: only the refusals below are left
    calls = _fail_create(ctx, ROLE_MESSAGE, times=2)
    converge(stack(ctx))
    assert len(calls) == 4  # two functions, the first of them refused twice
    for purpose in (PREPROCESS, STREAM_PROCESSOR):
        client("lambda").get_function(FunctionName=ctx.names.function(purpose))


def test_other_invalid_parameters_are_not_retried(ctx: Context) -> None:
    converge(underneath(ctx))
    calls = _fail_create(ctx, "Unzipped size must be smaller than 262144000 bytes", times=2)
    report = execute(plan_apply(stack(ctx)))
    failed = {k: o.error or "" for k, o in report.outcomes.items() if o.error}
    assert set(failed) == {function_key(PREPROCESS), function_key(STREAM_PROCESSOR)}
    assert all("Unzipped size" in error for error in failed.values())
    assert len(calls) == 2


def test_a_plan_the_account_concurrency_cannot_hold_fails_before_any_write(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLPIPE_LOCAL_LAMBDA_CONCURRENCY", "10")  # a new account's quota
    ctx.aws.log.reset()
    with pytest.raises(MlpipeError) as caught:
        plan_apply(stack(ctx))
    assert str(caught.value).startswith(
        "lambdas.*.reserved_concurrency: preprocess 50 + stream_processor 10 = 60 does not fit "
        "the account's Lambda concurrency (quota 10, 10 available to these functions, of which "
        "AWS keeps 10 unreserved)"
    )
    assert ctx.aws.log.writes() == []
    assert "lambda:GetAccountSettings" in ctx.aws.log.calls


def test_reservations_fit_under_the_unreserved_minimum(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLPIPE_LOCAL_LAMBDA_CONCURRENCY", "160")  # 60 reserved, 100 kept
    converge(stack(ctx))
    monkeypatch.setenv("MLPIPE_LOCAL_LAMBDA_CONCURRENCY", "159")
    with pytest.raises(MlpipeError, match="quota 159, 159 available"):
        plan_apply(lambdas.resources(ctx))


def test_no_reservation_needs_no_room(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLPIPE_LOCAL_LAMBDA_CONCURRENCY", "10")
    spec = ctx.spec.lambdas
    ctx.spec = ctx.spec.model_copy(
        update={
            "lambdas": spec.model_copy(
                update={
                    "preprocess": spec.preprocess.model_copy(update={"reserved_concurrency": None}),
                    "stream_processor": spec.stream_processor.model_copy(
                        update={"reserved_concurrency": None}
                    ),
                }
            )
        }
    )
    converge(stack(ctx))
    assert "lambda:PutFunctionConcurrency" not in ctx.aws.log.calls


def _lambda_enis() -> list[dict[str, Any]]:
    return client("ec2").describe_network_interfaces(
        Filters=[{"Name": "description", "Values": [f"{network.LAMBDA_ENI}*"]}]
    )["NetworkInterfaces"]


def test_destroy_deletes_functions_and_log_groups_and_keeps_roles_until_the_interfaces_go(
    ctx: Context, applied: Report
) -> None:
    """The release window is on (`ctx`): the functions' interfaces block their subnets and
    security group, and Lambda needs each function's role to release them."""
    assert _lambda_enis(), "the VPC functions own network interfaces"
    ctx.aws.log.reset()
    plan = destroy(stack(ctx))
    calls = list(ctx.aws.log.calls)
    mine = {r.key for r in lambdas.resources(ctx)}
    assert mine <= {s.key for s in plan.steps if s.action is Action.DELETE}
    assert client("lambda").list_functions()["Functions"] == []
    groups = client("logs").describe_log_groups(logGroupNamePrefix="/aws/lambda/")["logGroups"]
    assert groups == []
    assert all(r.read() is None for r in lambdas.resources(ctx))
    assert _lambda_enis() == []
    # Released by Lambda (with the roles), not deleted by mlpipe; the roles went after.
    # (a role deleted first would have left them behind, for mlpipe to delete)
    assert "ec2:DeleteNetworkInterface" not in calls
    first_role_delete = calls.index("iam:DeleteRole")
    assert "ec2:DescribeNetworkInterfaces" in calls[:first_role_delete]
    assert (
        client("ec2").describe_subnets(
            Filters=[{"Name": "tag:mlpipe:pipeline", "Values": [ctx.names.pipeline_id]}]
        )["Subnets"]
        == []
    )


def test_destroy_deletes_the_interfaces_a_role_deleted_first_left_behind(
    ctx: Context, applied: Report
) -> None:
    """An earlier run (or someone) deleted the functions and their roles at once: Lambda left the
    interfaces detached, and only their owner can delete them."""
    iam = client("iam")
    for purpose in (PREPROCESS, STREAM_PROCESSOR):
        client("lambda").delete_function(FunctionName=ctx.names.function(purpose))
        role = ctx.names.role(purpose)
        for policy in iam.list_role_policies(RoleName=role)["PolicyNames"]:
            iam.delete_role_policy(RoleName=role, PolicyName=policy)
        for attached in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]:
            iam.detach_role_policy(RoleName=role, PolicyArn=attached["PolicyArn"])
        iam.delete_role(RoleName=role)
    ctx.aws.log.reset()
    destroy(stack(ctx))
    assert _lambda_enis() == []
    assert ctx.aws.log.count("ec2:DeleteNetworkInterface") >= 1


def test_a_dependency_violation_without_lambda_interfaces_is_not_retried(
    ctx: Context, applied: Report
) -> None:
    destroy(lambdas.resources(ctx))
    calls: list[int] = []

    def refuse(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        calls.append(1)
        error = {"Code": "DependencyViolation", "Message": "resource has a dependent object"}
        return AWSResponse("https://ec2", 400, {}, None), {"Error": error}

    ctx.aws.client("ec2").meta.events.register("before-call.ec2.DeleteSecurityGroup", refuse)
    report = execute(plan_destroy(underneath(ctx), force=True))
    failed = {k: o.error or "" for k, o in report.outcomes.items() if o.error}
    assert network.SG_LAMBDA in failed
    assert all("DependencyViolation" in error for error in failed.values())
    # Asked again once after finding no Lambda interface there, then refused: no waiting.
    assert len(calls) == 2 * len(failed)
