"""The inference API on moto: routes, cache key, stage settings, deployments, access control."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mlpipe.core.context import Context
from mlpipe.core.executor import Report
from mlpipe.core.plan import Action, plan_apply
from mlpipe.core.resource import Resource
from mlpipe.resources import api, api_access
from mlpipe.resources.api import ACCOUNT, API, LOGS_ROLE, STAGE
from mlpipe.resources.api_access import API_KEY, PERMISSION, USAGE_PLAN
from mlpipe.resources.iam import role_key
from mlpipe.resources.lambdas import PREPROCESS, function_key
from tests.resources.serving import (
    ACCOUNT as ACCOUNT_ID,
)
from tests.resources.serving import (
    REGION,
    apply,
    client,
    destroy,
    everything,
    needed,
    step_paths,
    with_spec,
)
from tests.support import Shared, build_once, converge, four_step

HEADER = "method.request.header.X-Features-Hash"
EXPECTED_SETTINGS = {
    "metricsEnabled": True,
    "loggingLevel": "INFO",
    "dataTraceEnabled": False,
    "cachingEnabled": True,
    "cacheTtlInSeconds": 300,
    "cacheDataEncrypted": True,
    "throttlingRateLimit": 100.0,
    "throttlingBurstLimit": 200,
}


def stack(ctx: Context) -> list[Resource]:
    """The API, its access and what they use: the preprocess function and its foundation, the
    logging role."""
    return needed([*api.resources(ctx), *api_access.resources(ctx)], everything(ctx))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Shared[Report]:
    return build_once(tmp_path_factory.mktemp("built"), lambda ctx: converge(stack(ctx)))


@pytest.fixture
def applied(ctx: Context, built: Shared[Report]) -> Report:
    """The pipeline applied: a copy of the account one converge built for the module."""
    return built.restore()


def test_four_step_and_a_no_op_apply_never_redeploys(ctx: Context) -> None:
    """The idempotency check, once: the other tests start from `applied` (one converge)."""
    report = four_step(ctx, stack(ctx))
    # The log holds the converged plan and apply.
    assert ctx.aws.log.count("apigateway:CreateDeployment") == 0
    api_id = report.outputs[API]["id"]
    assert len(client("apigateway").get_deployments(restApiId=api_id)["items"]) == 1


def predict(api_id: str) -> dict[str, Any]:
    apigw = client("apigateway")
    resources = apigw.get_resources(restApiId=api_id)["items"]
    resource = next(r for r in resources if r["path"] == "/predict")
    return dict(apigw.get_method(restApiId=api_id, resourceId=resource["id"], httpMethod="POST"))


def stage(api_id: str) -> dict[str, Any]:
    return dict(client("apigateway").get_stage(restApiId=api_id, stageName="prod"))


def test_post_predict_is_a_lambda_proxy_keyed_on_the_features_hash_header(
    ctx: Context, applied: Report
) -> None:
    api_id = applied.outputs[API]["id"]
    described = client("apigateway").get_rest_api(restApiId=api_id)
    assert described["name"] == "ml-pipeline-prod-inference-api"
    assert described["endpointConfiguration"]["types"] == ["REGIONAL"]
    method = predict(api_id)
    assert method["authorizationType"] == "NONE" and method["apiKeyRequired"] is True
    assert method["requestParameters"] == {HEADER: False}
    integration = method["methodIntegration"]
    function = applied.outputs[function_key(PREPROCESS)]["arn"]
    assert integration["type"] == "AWS_PROXY" and integration["httpMethod"] == "POST"
    assert integration["uri"] == (
        f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/{function}/invocations"
    )
    assert integration["cacheKeyParameters"] == [HEADER]


def test_stage_caches_traces_logs_and_throttles(ctx: Context, applied: Report) -> None:
    live = stage(applied.outputs[API]["id"])
    assert live["cacheClusterEnabled"] is True
    assert live["cacheClusterSize"] == "0.5"
    assert live["tracingEnabled"] is True
    for key in ("*/*", "predict/POST"):
        settings = live["methodSettings"][key]
        assert {k: settings[k] for k in EXPECTED_SETTINGS} == EXPECTED_SETTINGS, key
    assert live["tags"]["mlpipe:resource"] == STAGE


def test_logging_uses_the_account_role_scoped_to_execution_logs(
    ctx: Context, applied: Report
) -> None:
    role = applied.outputs[role_key(LOGS_ROLE)]
    assert client("apigateway").get_account()["cloudwatchRoleArn"] == role["arn"]
    iam = client("iam")
    trust = iam.get_role(RoleName=role["name"])["Role"]["AssumeRolePolicyDocument"]
    assert trust["Statement"][0]["Principal"] == {"Service": ["apigateway.amazonaws.com"]}
    document = iam.get_role_policy(RoleName=role["name"], PolicyName="least-privilege")[
        "PolicyDocument"
    ]
    by_sid = {s["Sid"]: s for s in document["Statement"]}
    assert by_sid["ExecutionLogs"]["Resource"] == [
        f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:/aws/apigateway/*",
        f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:API-Gateway-Execution-Logs_*",
    ]
    assert "logs:PutLogEvents" in by_sid["ExecutionLogs"]["Action"]


def test_only_post_predict_on_this_stage_may_invoke_the_function(
    ctx: Context, applied: Report
) -> None:
    api_id = applied.outputs[API]["id"]
    document = client("lambda").get_policy(FunctionName=ctx.names.function(PREPROCESS))["Policy"]
    [statement] = json.loads(document)["Statement"]
    assert statement["Sid"] == "ml-pipeline-prod-api-invoke"
    assert statement["Principal"] == {"Service": "apigateway.amazonaws.com"}
    assert statement["Action"] == "lambda:InvokeFunction"
    assert statement["Condition"]["ArnLike"] == {
        "AWS:SourceArn": f"arn:aws:execute-api:{REGION}:{ACCOUNT_ID}:{api_id}/prod/POST/predict"
    }


def test_usage_plan_throttles_the_api_key_on_this_stage(ctx: Context, applied: Report) -> None:
    apigw = client("apigateway")
    plan = apigw.get_usage_plan(usagePlanId=applied.outputs[USAGE_PLAN]["id"])
    assert plan["throttle"] == {"rateLimit": 100, "burstLimit": 200}
    assert plan["quota"]["limit"] == 100_000 and plan["quota"]["period"] == "DAY"
    assert plan["apiStages"] == [{"apiId": applied.outputs[API]["id"], "stage": "prod"}]
    keys = apigw.get_usage_plan_keys(usagePlanId=plan["id"])["items"]
    assert [k["id"] for k in keys] == [applied.outputs[API_KEY]["id"]]
    key = apigw.get_api_key(apiKey=applied.outputs[API_KEY]["id"])
    assert key["enabled"] is True and key["tags"]["mlpipe:resource"] == API_KEY


def test_a_route_change_redeploys_once(ctx: Context, applied: Report) -> None:
    api_id = applied.outputs[API]["id"]
    before = stage(api_id)["deploymentId"]
    rekeyed = with_spec(ctx, "api.cache", key_header="X-Request-Hash")

    ctx.aws.log.reset()
    plan = apply(stack(rekeyed))
    changed = step_paths(plan)
    assert changed[STAGE] == (Action.UPDATE, ["DeploymentDescription"])
    assert changed[API][0] is Action.UPDATE
    assert ctx.aws.log.count("apigateway:CreateDeployment") == 1
    assert ctx.aws.log.count("apigateway:CreateRestApi") == 0
    after = stage(api_id)["deploymentId"]
    assert after != before
    integration = predict(api_id)["methodIntegration"]
    assert integration["cacheKeyParameters"] == ["method.request.header.X-Request-Hash"]
    assert not plan_apply(stack(rekeyed)).changes


def test_stage_ttl_usage_plan_throttle_and_api_tags_drift_are_repaired_without_redeploying(
    ctx: Context, applied: Report
) -> None:
    api_id, plan_id = applied.outputs[API]["id"], applied.outputs[USAGE_PLAN]["id"]
    apigw = client("apigateway")
    apigw.update_stage(
        restApiId=api_id,
        stageName="prod",
        patchOperations=[{"op": "replace", "path": "/*/*/caching/ttlInSeconds", "value": "30"}],
    )
    apigw.update_usage_plan(
        usagePlanId=plan_id,
        patchOperations=[{"op": "replace", "path": "/throttle/burstLimit", "value": "5000"}],
    )
    arn = f"arn:aws:apigateway:{REGION}::/restapis/{api_id}"
    apigw.tag_resource(resourceArn=arn, tags={"Stray": "tag"})
    apigw.untag_resource(resourceArn=arn, tagKeys=["CostCenter"])

    ctx.aws.log.reset()
    plan = apply(stack(ctx))
    assert step_paths(plan) == {
        STAGE: (Action.UPDATE, ["MethodSettings.*/*.cacheTtlInSeconds"]),
        USAGE_PLAN: (Action.UPDATE, ["Throttle.burstLimit"]),
        API: (Action.UPDATE, ["Tags"]),
    }
    assert ctx.aws.log.count("apigateway:CreateDeployment") == 0
    assert ctx.aws.log.count("apigateway:UpdateStage") == 1
    assert stage(api_id)["methodSettings"]["*/*"]["cacheTtlInSeconds"] == 300
    assert apigw.get_usage_plan(usagePlanId=plan_id)["throttle"]["burstLimit"] == 200
    tags = apigw.get_tags(resourceArn=arn)["tags"]
    assert "Stray" not in tags and tags["CostCenter"] == "ml-platform"


def test_iam_auth_needs_no_key_and_no_usage_plan(ctx: Context) -> None:
    iam_ctx = with_spec(ctx, "api", auth="iam")
    keys = {r.key for r in api_access.resources(iam_ctx)}
    assert keys == {PERMISSION}
    report = four_step(iam_ctx, stack(iam_ctx))
    method = predict(report.outputs[API]["id"])
    assert method["authorizationType"] == "AWS_IAM" and method["apiKeyRequired"] is False
    assert client("apigateway").get_usage_plans()["items"] == []
    assert client("apigateway").get_api_keys()["items"] == []


def test_switching_to_iam_auth_redeploys_and_keeps_the_api(ctx: Context, applied: Report) -> None:
    iam_ctx = with_spec(ctx, "api", auth="iam")
    ctx.aws.log.reset()
    apply(stack(iam_ctx))
    assert ctx.aws.log.count("apigateway:CreateDeployment") == 1
    assert ctx.aws.log.count("apigateway:CreateRestApi") == 0
    assert predict(applied.outputs[API]["id"])["authorizationType"] == "AWS_IAM"


def test_an_open_api_is_warned_about_at_plan_time(ctx: Context) -> None:
    open_ctx = with_spec(ctx, "api", auth="none")
    notes = {s.key: s.notes for s in plan_apply(api.resources(open_ctx)).steps}
    assert any("open to anyone" in note for note in notes[API])
    assert not [r for r in api.resources(ctx) if r.warnings()]


def test_an_existing_usable_logging_role_is_kept(ctx: Context) -> None:
    iam = client("iam")
    other = iam.create_role(
        RoleName="someone-elses-apigateway-logs",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "apigateway.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ]
            }
        ),
    )["Role"]["Arn"]
    client("apigateway").update_account(
        patchOperations=[{"op": "replace", "path": "/cloudwatchRoleArn", "value": other}]
    )
    # The account setting and its role: the resource that decides.
    account = needed([r for r in api.resources(ctx) if r.key == ACCOUNT], everything(ctx))
    apply(account)
    assert client("apigateway").get_account()["cloudwatchRoleArn"] == other
    plan = destroy(account)
    assert ACCOUNT not in {s.key for s in plan.steps if s.action is Action.DELETE}
    assert client("apigateway").get_account()["cloudwatchRoleArn"] == other


def test_the_execution_log_group_is_mlpipes_and_destroy_removes_it_the_api_and_its_access(
    ctx: Context, applied: Report
) -> None:
    name = f"API-Gateway-Execution-Logs_{applied.outputs[API]['id']}/prod"
    [group] = client("logs").describe_log_groups(logGroupNamePrefix=name)["logGroups"]
    key = client("kms").describe_key(KeyId=ctx.names.kms_alias)["KeyMetadata"]["Arn"]
    assert (group["logGroupName"], group["kmsKeyId"], group["retentionInDays"]) == (name, key, 30)
    tags = client("logs").list_tags_log_group(logGroupName=name)["tags"]
    assert tags["mlpipe:resource"] == "logs:execution-logs"

    plan = destroy(stack(ctx))
    deleted = {s.key for s in plan.steps if s.action is Action.DELETE}
    assert {API, STAGE, ACCOUNT, PERMISSION, API_KEY, USAGE_PLAN} <= deleted
    apigw = client("apigateway")
    assert apigw.get_rest_apis()["items"] == []
    assert apigw.get_usage_plans()["items"] == [] and apigw.get_api_keys()["items"] == []
    assert not apigw.get_account().get("cloudwatchRoleArn")
    assert all(r.read() is None for r in [*api.resources(ctx), *api_access.resources(ctx)])
    assert client("logs").describe_log_groups(logGroupNamePrefix=name)["logGroups"] == []
