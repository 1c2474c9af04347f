"""The local API: the real preprocess handler behind the pipeline's REST API, served over HTTP
from what mlpipe applied to the embedded AWS; and the in-process function runtime under it."""

from __future__ import annotations

import contextlib
import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from runtime_testing import (
    REGION,
    Clock,
    FakeSageMaker,
    Pipeline,
    converged_pipeline,
    fake_sagemaker_server,
)

from mlpipe.local.api import LocalApi
from mlpipe.local.functions import (
    FunctionConfig,
    LocalFunction,
    LocalFunctions,
    runtime_environment,
)
from mlpipe.ops.client import ApiClient, features_hash
from mlpipe.resources.api import PREDICT_METHOD
from mlpipe.resources.lambdas import PREPROCESS
from tests.corpus.corpus import api_body, cache_key, cases

HEADER = "X-Features-Hash"
KEY_1 = features_hash([1.5, 2.5, 3.0])
KEY_12 = features_hash([1, 2])
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def pipeline() -> Iterator[Pipeline]:
    with converged_pipeline() as converged:
        yield converged


@pytest.fixture(scope="module")
def sagemaker() -> Iterator[FakeSageMaker]:
    with fake_sagemaker_server() as fake:
        yield fake


@pytest.fixture
def fake_sagemaker(sagemaker: FakeSageMaker) -> FakeSageMaker:
    sagemaker.reset()
    return sagemaker


def post(
    url: str, body: Any, headers: dict[str, str] | None = None, method: str = "POST"
) -> tuple[int, dict[str, str], Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with _opener.open(request, timeout=30) as response:
            status, raw, found = response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        status, raw, found = error.code, error.read(), dict(error.headers)
    return status, found, json.loads(raw) if raw else None


class Recorder:
    """The events each function received, through LocalFunctions' on_invoke."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, function: LocalFunction, event: Any, outcome: Any) -> None:
        self.events.append(event)


@pytest.fixture
def api_key(pipeline: Pipeline) -> str:
    apigw = pipeline.clients("apigateway")
    [key] = [k for k in apigw.get_api_keys()["items"] if k["name"] == pipeline.names.api_key]
    return str(apigw.get_api_key(apiKey=key["id"], includeValue=True)["value"])


@contextlib.contextmanager
def serving(
    pipeline: Pipeline, sagemaker: FakeSageMaker, clock: Clock | None = None
) -> Iterator[tuple[LocalApi, Recorder]]:
    recorder = Recorder()
    functions = pipeline.functions(sagemaker, on_invoke=recorder)
    api = LocalApi(
        pipeline.clients, functions, pipeline.names.api, clock=clock or Clock(), config_ttl=60
    )
    with api:
        yield api, recorder
    functions.close()


def stored(pipeline: Pipeline, prediction_id: str) -> list[dict[str, Any]]:
    ddb = pipeline.clients("dynamodb")
    return ddb.query(
        TableName=pipeline.names.predictions_table,
        KeyConditionExpression="predictionId = :p",
        ExpressionAttributeValues={":p": {"S": prediction_id}},
    )["Items"]


def item_count(pipeline: Pipeline) -> int:
    ddb = pipeline.clients("dynamodb")
    return int(ddb.scan(TableName=pipeline.names.predictions_table, Select="COUNT")["Count"])


def update_stage(pipeline: Pipeline, *ops: dict[str, str]) -> None:
    apigw = pipeline.clients("apigateway")
    [found] = [a for a in apigw.get_rest_apis()["items"] if a["name"] == pipeline.names.api]
    apigw.update_stage(restApiId=found["id"], stageName="prod", patchOperations=list(ops))


def caching(enabled: bool) -> dict[str, str]:
    value = "true" if enabled else "false"
    return {"op": "replace", "path": f"/{PREDICT_METHOD}/caching/enabled", "value": value}


# --- the API ---------------------------------------------------------------------------------


def test_predict_with_a_valid_key_stores_the_version_of_the_variant_that_answered(
    pipeline: Pipeline, fake_sagemaker: FakeSageMaker, api_key: str
) -> None:
    fake_sagemaker.variant = "ModelB"
    with serving(pipeline, fake_sagemaker) as (api, recorder):
        assert api.url.startswith("http://127.0.0.1:")
        status, headers, body = post(
            f"{api.url}/prod/predict",
            {"features": [1.5, 2.5, 3.0]},
            {"x-api-key": api_key, HEADER: KEY_1, "Content-Type": "application/json"},
        )

    assert status == 200, body
    assert headers["Content-Type"] == "application/json"
    assert body["modelVersion"] == "v2.0.0"  # ModelB serves v2.0.0 in the deployment state
    assert body["invokedVariant"] == "ModelB"
    assert body["predictions"] == 7.0
    [item] = stored(pipeline, body["predictionId"])
    assert item["modelVersion"] == {"S": "v2.0.0"}
    assert item["invokedVariant"] == {"S": "ModelB"}
    [call] = fake_sagemaker.calls
    assert call["path"] == f"/endpoints/{pipeline.names.endpoint}/invocations"
    assert call["instances"] == [[1.5, 2.5, 3.0]]

    [event] = recorder.events
    assert event["resource"] == "/predict" and event["path"] == "/predict"
    assert event["httpMethod"] == "POST"
    assert json.loads(event["body"]) == {"features": [1.5, 2.5, 3.0]}
    assert event["isBase64Encoded"] is False
    assert event["headers"][HEADER] == KEY_1
    assert event["multiValueHeaders"][HEADER] == [KEY_1]
    assert event["queryStringParameters"] is None and event["pathParameters"] is None
    context = event["requestContext"]
    assert context["stage"] == "prod" and context["resourcePath"] == "/predict"
    assert context["httpMethod"] == "POST" and context["path"] == "/prod/predict"
    assert context["identity"]["apiKey"] == api_key
    assert context["identity"]["sourceIp"] == "127.0.0.1"
    assert context["requestId"] == headers["x-amzn-RequestId"]


def test_without_a_valid_key_the_api_answers_403_and_nothing_runs(
    pipeline: Pipeline, fake_sagemaker: FakeSageMaker, api_key: str
) -> None:
    apigw = pipeline.clients("apigateway")
    loose = apigw.create_api_key(name="not-in-a-usage-plan", enabled=True)
    loose_value = apigw.get_api_key(apiKey=loose["id"], includeValue=True)["value"]
    before = item_count(pipeline)
    body = {"features": [1, 2, 3]}
    with serving(pipeline, fake_sagemaker) as (api, recorder):
        url = f"{api.url}/prod/predict"
        answers = [
            post(url, body, {HEADER: features_hash([1, 2, 3])}),
            post(url, body, {HEADER: features_hash([1, 2, 3]), "x-api-key": "wrong"}),
            post(
                url, body, {HEADER: features_hash([1, 2, 3]), "x-api-key": loose_value}
            ),  # bound to no plan
        ]
        assert post(url, body, {HEADER: features_hash([1, 2, 3]), "x-api-key": api_key})[0] == 200
    for status, _, answer in answers:
        assert (status, answer) == (403, {"message": "Forbidden"})
    assert len(recorder.events) == 1  # the one request with the pipeline's key
    assert item_count(pipeline) == before + 1
    apigw.delete_api_key(apiKey=loose["id"])


def test_a_disabled_key_is_refused(
    pipeline: Pipeline, fake_sagemaker: FakeSageMaker, api_key: str
) -> None:
    apigw = pipeline.clients("apigateway")
    [key] = [k for k in apigw.get_api_keys()["items"] if k["name"] == pipeline.names.api_key]
    disable = [{"op": "replace", "path": "/enabled", "value": "false"}]
    apigw.update_api_key(apiKey=key["id"], patchOperations=disable)
    try:
        with serving(pipeline, fake_sagemaker) as (api, recorder):
            status, _, body = post(
                f"{api.url}/prod/predict", {"features": [1]}, {"x-api-key": api_key}
            )
    finally:
        enable = [{"op": "replace", "path": "/enabled", "value": "true"}]
        apigw.update_api_key(apiKey=key["id"], patchOperations=enable)
    assert (status, body) == (403, {"message": "Forbidden"})
    assert recorder.events == []


def test_a_bad_body_is_answered_400_by_the_real_handler(
    pipeline: Pipeline, fake_sagemaker: FakeSageMaker, api_key: str
) -> None:
    before = item_count(pipeline)
    with serving(pipeline, fake_sagemaker) as (api, recorder):
        url = f"{api.url}/prod/predict"
        not_json = post(url, b"{not json", {"x-api-key": api_key, HEADER: "1"})
        no_features = post(url, {"version": "v1.0.0"}, {"x-api-key": api_key, HEADER: "2"})
    assert not_json[0] == 400
    assert not_json[2]["error"].startswith("request body is not valid JSON")
    assert (no_features[0], no_features[2]) == (
        400,
        {"error": "'features' must be a non-empty list of numbers"},
    )
    assert len(recorder.events) == 2
    assert fake_sagemaker.calls == []
    assert item_count(pipeline) == before


def test_unknown_stage_route_or_method_answers_missing_authentication_token(
    pipeline: Pipeline, fake_sagemaker: FakeSageMaker, api_key: str
) -> None:
    with serving(pipeline, fake_sagemaker) as (api, recorder):
        headers = {"x-api-key": api_key}
        answers = [
            post(f"{api.url}/prod/nothing-here", {"features": [1]}, headers),
            post(f"{api.url}/staging/predict", {"features": [1]}, headers),
            post(f"{api.url}/prod/predict", b"", headers, method="GET"),
            post(f"{api.url}/prod", {"features": [1]}, headers),
        ]
    for status, _, body in answers:
        assert (status, body) == (403, {"message": "Missing Authentication Token"})
    assert recorder.events == []


def test_iam_methods_need_an_authorization_header(
    pipeline: Pipeline, fake_sagemaker: FakeSageMaker
) -> None:
    apigw = pipeline.clients("apigateway")
    [found] = [a for a in apigw.get_rest_apis()["items"] if a["name"] == pipeline.names.api]
    api_id = found["id"]
    arn = pipeline.clients("lambda").get_function(FunctionName=pipeline.names.function(PREPROCESS))[
        "Configuration"
    ]["FunctionArn"]
    resource = apigw.create_resource(
        restApiId=api_id, parentId=found["rootResourceId"], pathPart="signed"
    )
    apigw.put_method(
        restApiId=api_id, resourceId=resource["id"], httpMethod="POST", authorizationType="AWS_IAM"
    )
    apigw.put_integration(
        restApiId=api_id,
        resourceId=resource["id"],
        httpMethod="POST",
        type="AWS_PROXY",
        integrationHttpMethod="POST",
        uri=f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/{arn}/invocations",
    )
    try:
        with serving(pipeline, fake_sagemaker) as (api, recorder):
            url = f"{api.url}/prod/signed"
            unsigned = post(url, {"features": [1]})
            signed = [
                post(
                    url,
                    {"features": [1]},
                    {"Authorization": "AWS4-HMAC-SHA256 ...", HEADER: features_hash([1])},
                )
                for _ in range(2)
            ]
    finally:
        apigw.delete_resource(restApiId=api_id, resourceId=resource["id"])
    assert (unsigned[0], unsigned[2]) == (403, {"message": "Missing Authentication Token"})
    assert [answer[0] for answer in signed] == [200, 200], signed
    # No method setting of its own: the stage-wide */* caching covers GET only, not this POST.
    assert [e["resource"] for e in recorder.events] == ["/signed", "/signed"]
    assert api.cache_hits == 0
    assert recorder.events[0]["requestContext"]["identity"]["apiKey"] is None


def test_the_stage_cache_answers_repeated_requests_without_running_the_function(
    pipeline: Pipeline, fake_sagemaker: FakeSageMaker, api_key: str
) -> None:
    clock = Clock()
    with serving(pipeline, fake_sagemaker, clock) as (api, recorder):
        url = f"{api.url}/prod/predict"
        first = post(url, {"features": [1, 2]}, {"x-api-key": api_key, HEADER: KEY_12})
        again = post(url, {"features": [1, 2]}, {"x-api-key": api_key, HEADER: KEY_12})
        assert len(recorder.events) == 1
        assert (api.cache_hits, api.cache_misses) == (1, 1)
        other = post(
            url, {"features": [3, 4]}, {"x-api-key": api_key, HEADER: features_hash([3, 4])}
        )
        assert len(recorder.events) == 2
        clock.advance(299)
        post(url, {"features": [1, 2]}, {"x-api-key": api_key, HEADER: KEY_12})
        assert len(recorder.events) == 2  # still within the stage's 300 s TTL
        clock.advance(1)
        expired = post(url, {"features": [1, 2]}, {"x-api-key": api_key, HEADER: KEY_12})
        assert len(recorder.events) == 3
        assert (api.cache_hits, api.cache_misses) == (2, 3)
    assert first[0] == again[0] == other[0] == expired[0] == 200
    assert again[2] == first[2]  # the cached response, same predictionId
    assert again[1]["x-amzn-RequestId"] != first[1]["x-amzn-RequestId"]
    assert other[2]["predictionId"] != first[2]["predictionId"]
    assert expired[2]["predictionId"] != first[2]["predictionId"]
    assert first[2]["features"] == [1, 2]


def test_with_caching_off_for_the_method_every_request_runs_the_function(
    pipeline: Pipeline, fake_sagemaker: FakeSageMaker, api_key: str
) -> None:
    update_stage(pipeline, caching(False))  # the stage-wide */* setting covers GET only
    try:
        with serving(pipeline, fake_sagemaker) as (api, recorder):
            url = f"{api.url}/prod/predict"
            for _ in range(2):
                status, _, _ = post(
                    url, {"features": [1, 2]}, {"x-api-key": api_key, HEADER: KEY_12}
                )
                assert status == 200
    finally:
        update_stage(pipeline, caching(True))
    assert len(recorder.events) == 2
    assert (api.cache_hits, api.cache_misses) == (0, 0)


def test_the_usage_plan_throttles_the_key(
    pipeline: Pipeline, fake_sagemaker: FakeSageMaker, api_key: str
) -> None:
    apigw = pipeline.clients("apigateway")
    [plan] = [p for p in apigw.get_usage_plans()["items"] if p["name"] == pipeline.names.usage_plan]

    def throttle(rate: str, burst: str) -> None:
        apigw.update_usage_plan(
            usagePlanId=plan["id"],
            patchOperations=[
                {"op": "replace", "path": "/throttle/rateLimit", "value": rate},
                {"op": "replace", "path": "/throttle/burstLimit", "value": burst},
            ],
        )

    throttle("1", "2")
    clock = Clock()
    try:
        with serving(pipeline, fake_sagemaker, clock) as (api, _):
            url = f"{api.url}/prod/predict"
            headers = {"x-api-key": api_key, HEADER: features_hash([1])}
            statuses = [post(url, {"features": [1]}, headers)[0] for _ in range(3)]
            refused = post(url, {"features": [1]}, headers)
            clock.advance(1)
            statuses.append(post(url, {"features": [1]}, headers)[0])
    finally:
        throttle("100", "200")
    assert statuses == [200, 200, 429, 200]
    assert (refused[0], refused[2]) == (429, {"message": "Too Many Requests"})


def test_a_function_error_is_a_502(
    pipeline: Pipeline, fake_sagemaker: FakeSageMaker, api_key: str, tmp_path: Path
) -> None:
    (tmp_path / "handler.py").write_text("def handler(event, context):\n    raise KeyError('x')\n")
    functions = LocalFunctions(
        pipeline.clients,
        {pipeline.names.function(PREPROCESS): tmp_path},
        endpoint_url=pipeline.aws.endpoint_url,
        region=REGION,
    )
    with LocalApi(pipeline.clients, functions, pipeline.names.api) as api:
        status, _, body = post(f"{api.url}/prod/predict", {"features": [1]}, {"x-api-key": api_key})
    assert (status, body) == (502, {"message": "Internal server error"})


# --- the function runtime --------------------------------------------------------------------


def config(**changes: Any) -> FunctionConfig:
    base = {
        "name": "probe",
        "arn": f"arn:aws:lambda:{REGION}:123456789012:function:probe",
        "handler": "handler.handler",
        "timeout": 3,
        "memory_mb": 256,
        "variables": {"GREETING": "hello"},
    }
    return FunctionConfig(**{**base, **changes})


PROBE = """
import os
import boto3

loaded = os.environ.get("GREETING")
calls = 0


def handler(event, context):
    global calls
    calls += 1
    client = boto3.client("sqs")
    return {
        "event": event,
        "loaded": loaded,
        "greeting": os.environ.get("GREETING"),
        "profile": os.environ.get("AWS_PROFILE"),
        "endpoint": client.meta.endpoint_url,
        "sagemaker": boto3.client("sagemaker-runtime").meta.endpoint_url,
        "region": client.meta.region_name,
        "calls": calls,
        "name": context.function_name,
        "memory": context.memory_limit_in_mb,
        "arn": context.invoked_function_arn,
        "remaining": context.get_remaining_time_in_millis(),
        "log_group": context.log_group_name,
    }
"""


def test_a_handler_runs_with_its_environment_and_boto3_pointed_at_the_local_aws(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "handler.py").write_text(PROBE)
    monkeypatch.setenv("AWS_PROFILE", "someone-elses")
    monkeypatch.setenv("GREETING", "host value")
    env = runtime_environment("http://127.0.0.1:4599", "eu-west-1", "http://127.0.0.1:7000")
    clock = Clock()
    function = LocalFunction(config(), tmp_path, env, clock=clock)
    first = function.invoke({"n": 1})
    second = function.invoke({"n": 2})

    assert first.ok and second.ok, (first.error, second.error)
    payload = first.payload
    assert payload["event"] == {"n": 1}
    assert payload["loaded"] == payload["greeting"] == "hello"
    assert payload["profile"] is None
    assert payload["endpoint"] == "http://127.0.0.1:4599"
    assert payload["sagemaker"] == "http://127.0.0.1:7000"
    assert payload["region"] == "eu-west-1"
    assert (payload["name"], payload["memory"], payload["remaining"]) == ("probe", 256, 3000)
    assert payload["arn"].endswith(":function:probe")
    assert payload["log_group"] == "/aws/lambda/probe"
    assert second.payload["calls"] == 2  # warm: the module is kept between invocations
    # The host's environment is back once the handler returns.
    assert os.environ["AWS_PROFILE"] == "someone-elses"
    assert os.environ["GREETING"] == "host value"
    assert "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME" not in os.environ


def test_two_functions_from_one_directory_share_no_module_state(tmp_path: Path) -> None:
    (tmp_path / "handler.py").write_text(PROBE)
    env = runtime_environment("http://127.0.0.1:4599", REGION)
    one = LocalFunction(config(), tmp_path, env)
    two = LocalFunction(config(variables={"GREETING": "bonjour"}), tmp_path, env)
    assert one.invoke({}).payload["calls"] == 1
    assert one.invoke({}).payload["calls"] == 2
    answer = two.invoke({}).payload
    assert (answer["calls"], answer["loaded"]) == (1, "bonjour")


def test_errors_are_reported_as_lambda_reports_them(tmp_path: Path) -> None:
    (tmp_path / "handler.py").write_text(
        "import time\n"
        "def handler(event, context):\n"
        "    if event.get('fail'):\n"
        "        raise ValueError('bad input')\n"
        "    if event.get('set'):\n"
        "        return {1, 2}\n"
        "    return 'ok'\n"
    )
    env = runtime_environment("http://127.0.0.1:4599", REGION)
    clock = Clock()
    function = LocalFunction(config(), tmp_path, env, clock=clock)
    failed = function.invoke({"fail": True})
    assert failed.function_error == "Unhandled"
    assert failed.error is not None
    assert (failed.error["errorType"], failed.error["errorMessage"]) == ("ValueError", "bad input")
    assert failed.error["requestId"] == failed.request_id
    assert any("handler.py" in line for line in failed.error["stackTrace"])
    unmarshallable = function.invoke({"set": True})
    assert unmarshallable.error is not None
    assert unmarshallable.error["errorType"] == "Runtime.MarshalError"
    assert function.invoke({}).payload == "ok"

    missing = LocalFunction(config(handler="handler.nope"), tmp_path, env).invoke({})
    assert missing.error is not None and missing.error["errorType"] == "Runtime.HandlerNotFound"
    no_module = LocalFunction(config(handler="absent.handler"), tmp_path, env).invoke({})
    assert no_module.error is not None
    assert no_module.error["errorType"] == "Runtime.ImportModuleError"


def test_a_handler_slower_than_its_timeout_is_reported_timed_out(tmp_path: Path) -> None:
    clock = Clock()
    (tmp_path / "handler.py").write_text("def handler(event, context):\n    return 'done'\n")
    function = LocalFunction(
        config(timeout=3), tmp_path, runtime_environment("http://x", REGION), clock=clock
    )
    slow = function._run  # the handler takes 3.5 s of the function's clock

    def run(event: Any, request_id: str, started: float) -> Any:
        clock.advance(3.5)
        return slow(event, request_id, started)

    function._run = run  # type: ignore[method-assign]
    outcome = function.invoke({})
    assert outcome.error is not None
    assert outcome.error["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 3.00 seconds" in outcome.error["errorMessage"]
    assert not function.loaded  # a timed-out environment is not reused


def test_local_functions_follow_configuration_changes(
    pipeline: Pipeline, fake_sagemaker: FakeSageMaker
) -> None:
    functions = pipeline.functions(fake_sagemaker)
    name = pipeline.names.function(PREPROCESS)
    first = functions.get(name)
    assert functions.get(name) is first
    assert first.config.variables["TABLE_NAME"] == pipeline.names.predictions_table
    assert first.config.timeout == 30 and first.config.memory_mb == 512
    lam = pipeline.clients("lambda")
    original = lam.get_function_configuration(FunctionName=name)["Environment"]
    changed = {"Variables": {**original["Variables"], "LOG_LEVEL": "DEBUG"}}
    lam.update_function_configuration(FunctionName=name, Environment=changed)
    try:
        second = functions.get(name)
    finally:
        lam.update_function_configuration(FunctionName=name, Environment=original)
    assert second is not first
    assert second.config.variables["LOG_LEVEL"] == "DEBUG"
    assert boto3.DEFAULT_SESSION is None or boto3.DEFAULT_SESSION is not first._session


# --- a cache no client can poison ------------------------------------------------------------


def cached_answers(api: LocalApi) -> list[tuple[str | None, int, dict[str, Any]]]:
    """(cache key header value, status, body) of every entry in the local API's cache."""
    found = []
    for key, (_, response) in api._cache.items():
        [(_, value)] = key[3]
        found.append((value, response.status, json.loads(response.body)))
    return found


def assert_every_cached_answer_is_keyed_by_its_own_hash(api: LocalApi) -> None:
    for value, status, body in cached_answers(api):
        if status == 200:
            assert value is not None
            digest = value[:64]
            assert digest in {
                features_hash(body["features"]),
                features_hash(body["features"], variant=body["invokedVariant"]),
                features_hash(body["features"], version=body["modelVersion"]),
            }


def test_a_mismatched_hash_is_refused_and_never_caches_an_answer_under_it(
    pipeline: Pipeline, fake_sagemaker: FakeSageMaker, api_key: str
) -> None:
    wanted, other = [1.0, 2.0], [9.0, 9.0]
    before = item_count(pipeline)
    with serving(pipeline, fake_sagemaker) as (api, _):
        url = f"{api.url}/prod/predict"
        # The first client sends other features under the hash of `wanted`.
        poison = post(url, {"features": other}, {"x-api-key": api_key, HEADER: KEY_12})
        assert fake_sagemaker.calls == []  # refused before scoring
        assert_every_cached_answer_is_keyed_by_its_own_hash(api)
        # The second client asks for `wanted` with its true hash and gets its own answer.
        client = ApiClient(f"{api.url}/prod", api_key=api_key)
        answer = client.predict(wanted)
        assert_every_cached_answer_is_keyed_by_its_own_hash(api)
    assert poison[0] == 400
    assert poison[2] == {"error": f"header {HEADER} does not match the request's features_hash"}
    assert answer.prediction == 3.0  # the sum of `wanted`, not of `other` (18.0)
    assert [call["instances"] for call in fake_sagemaker.calls] == [[wanted]]
    assert item_count(pipeline) == before + 1


def test_a_request_without_the_header_is_refused_and_shares_no_answer(
    pipeline: Pipeline, fake_sagemaker: FakeSageMaker, api_key: str
) -> None:
    with serving(pipeline, fake_sagemaker) as (api, recorder):
        url = f"{api.url}/prod/predict"
        answers = [post(url, {"features": f}, {"x-api-key": api_key}) for f in ([1], [2])]
    assert [a[0] for a in answers] == [400, 400]
    assert answers[1][2] == {
        "error": f"header {HEADER} is required: the hash of the request (features_hash)"
    }
    assert fake_sagemaker.calls == []
    # API Gateway caches the first refusal under the empty key: only a refusal is ever there.
    assert len(recorder.events) == 1
    assert [(value, status) for value, status, _ in cached_answers(api)] == [(None, 400)]


def test_an_explicit_variant_is_part_of_the_cache_key(
    pipeline: Pipeline, fake_sagemaker: FakeSageMaker, api_key: str
) -> None:
    features = [4.0, 5.0]
    with serving(pipeline, fake_sagemaker) as (api, recorder):
        client = ApiClient(f"{api.url}/prod", api_key=api_key)
        fake_sagemaker.variant = "ModelA"
        first = client.predict(features, variant="ModelA")
        fake_sagemaker.variant = "ModelB"
        second = client.predict(features, variant="ModelB")
        again = client.predict(features, variant="ModelA")  # from the cache
        # A client sending ModelA's key gets what that key names, whatever its body says: the
        # cached entry was written only by a request whose body matched the key.
        url = f"{api.url}/prod/predict"
        crossed = post(
            url,
            {"features": features, "variant": "ModelB"},
            {"x-api-key": api_key, HEADER: features_hash(features, variant="ModelA")},
        )
        assert_every_cached_answer_is_keyed_by_its_own_hash(api)
    assert (first.variant, second.variant, again.variant) == ("ModelA", "ModelB", "ModelA")
    assert again.prediction_id == first.prediction_id != second.prediction_id
    targets = [c["headers"].get("X-Amzn-SageMaker-Target-Variant") for c in fake_sagemaker.calls]
    assert targets == ["ModelA", "ModelB"]
    assert len(recorder.events) == 2
    assert crossed[0] == 200 and crossed[2]["predictionId"] == first.prediction_id


@pytest.mark.parametrize(
    "case", [c for c in cases("api") if c.values[0].get("layer", "handler") == "gateway"]
)
def test_the_bad_input_corpus_at_the_gateway(
    case: dict[str, Any], pipeline: Pipeline, fake_sagemaker: FakeSageMaker, api_key: str
) -> None:
    body = api_body(case).encode()
    headers = {HEADER: cache_key(case, body.decode())[-1]}
    if case.get("api_key") != "none":
        headers["x-api-key"] = api_key
    with serving(pipeline, fake_sagemaker) as (api, recorder):
        status, _, answer = post(f"{api.url}/prod/predict", body, headers)
    assert (status, answer) == (case["status"], {"message": case["message"]})
    assert recorder.events == [] and fake_sagemaker.calls == []
    if status == 413:
        assert api._cache == {}  # refused before the cache, as by API Gateway and Lambda
