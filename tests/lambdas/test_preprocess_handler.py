from __future__ import annotations

import base64
import io
import json
import logging
from decimal import Decimal
from typing import Any

import pytest

from lambdas.preprocess import handler as pre

DAY = 86400


@pytest.fixture
def clock(pipeline: Any) -> Any:
    return pipeline.fresh(pre)


def api_event(body: Any, *, base64_encoded: bool = False) -> dict[str, Any]:
    text = body if isinstance(body, str) or body is None else json.dumps(body)
    if base64_encoded and text is not None:
        text = base64.b64encode(text.encode()).decode()
    return {
        "httpMethod": "POST",
        "path": "/predict",
        "body": text,
        "isBase64Encoded": base64_encoded,
    }


def call(event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = pre.handler(event, None)
    assert response["headers"]["Content-Type"] == "application/json"
    return response["statusCode"], json.loads(response["body"])


def test_scores_stores_and_returns_prediction(pipeline: Any, clock: Any) -> None:
    pipeline.queue(([0.87], "ModelB"))
    invoke_calls = pipeline.record_calls(
        pre._client("sagemaker-runtime"), "sagemaker-runtime.InvokeEndpoint"
    )

    status, body = call(api_event({"features": [1.5, 2, -3.25]}))

    assert status == 200
    assert body["modelVersion"] == "v2.0.0"  # the variant that served, not the active v1.0.0
    assert body["invokedVariant"] == "ModelB"
    assert body["predictions"] == 0.87
    assert body["features"] == [1.5, 2, -3.25]
    assert "TargetVariant" not in invoke_calls[0]
    assert invoke_calls[0]["ContentType"] == invoke_calls[0]["Accept"] == "application/json"
    assert json.loads(invoke_calls[0]["Body"]) == {"instances": [[1.5, 2, -3.25]]}

    [item] = pipeline.items()
    assert item["predictionId"] == body["predictionId"]
    assert item["timestamp"] == Decimal(int(pipeline.wall_clock * 1000)) == body["timestamp"]
    assert item["modelVersion"] == "v2.0.0"
    assert item["invokedVariant"] == "ModelB"
    assert item["predictions"] == Decimal("0.87")
    assert item["features"] == [Decimal("1.5"), Decimal("2"), Decimal("-3.25")]
    assert all(isinstance(f, Decimal) for f in item["features"])
    assert item["expirationTime"] == int(pipeline.wall_clock) + 30 * DAY
    assert body["expirationTime"] == item["expirationTime"]


def test_structured_prediction_and_ttl_days(pipeline: Any, clock: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("PREDICTION_TTL_DAYS", "7")
    prediction = {"label": "fraud", "scores": [0.1, 0.9], "rank": 2}
    pipeline.queue(([prediction], "ModelA"))

    status, body = call(api_event({"features": [1, 2, 3]}))

    assert status == 200
    assert body["predictions"] == prediction
    [item] = pipeline.items()
    assert item["predictions"] == {
        "label": "fraud",
        "scores": [Decimal("0.1"), Decimal("0.9")],
        "rank": Decimal("2"),
    }
    assert item["modelVersion"] == "v1.0.0"
    assert item["expirationTime"] == int(pipeline.wall_clock) + 7 * DAY


def test_base64_encoded_body(pipeline: Any, clock: Any) -> None:
    pipeline.queue(([1], "ModelA"))
    status, body = call(api_event({"features": [4.0]}, base64_encoded=True))
    assert status == 200
    assert body["features"] == [4.0]
    assert len(pipeline.items()) == 1


@pytest.mark.parametrize(
    ("request_body", "expected_target"),
    [({"variant": "ModelB"}, "ModelB"), ({"version": "v1.0.0"}, "ModelA")],
)
def test_explicit_routing_sets_target_variant(
    pipeline: Any, clock: Any, request_body: dict[str, str], expected_target: str
) -> None:
    pipeline.queue(([0.5], expected_target))
    invoke_calls = pipeline.record_calls(
        pre._client("sagemaker-runtime"), "sagemaker-runtime.InvokeEndpoint"
    )

    status, body = call(api_event({"features": [1.0, 2.0], **request_body}))

    assert status == 200
    assert [c.get("TargetVariant") for c in invoke_calls] == [expected_target]
    assert body["invokedVariant"] == expected_target


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (api_event(None), "body is required"),
        (api_event("{not json"), "not valid JSON"),
        ({"body": "%%%", "isBase64Encoded": True}, "base64"),
        (api_event([1, 2, 3]), "must be a JSON object"),
        (api_event({"feature": [1]}), "unknown field(s) 'feature'"),
        (api_event({}), "'features' must be a non-empty list"),
        (api_event({"features": []}), "'features' must be a non-empty list"),
        (api_event({"features": "1,2"}), "'features' must be a non-empty list"),
        (api_event({"features": [1, "2"]}), "'features[1]' must be a number"),
        (api_event({"features": [True, 2]}), "'features[0]' must be a number"),
        (api_event({"features": [1, None]}), "'features[1]' must be a number"),
        (api_event('{"features": [1, NaN]}'), "'features[1]' must be a finite number"),
        (api_event('{"features": [Infinity]}'), "'features[0]' must be a finite number"),
        (api_event('{"features": [1e999]}'), "'features[0]' must be a finite number"),
        (api_event({"features": [10**40]}), "'features[0]' must be a finite number"),
        (api_event({"features": [10**400]}), "'features[0]' is out of range: a 401-digit"),
        (api_event({"features": [0.125] * 60_000}), "request body is larger than 300000"),
        (api_event('{"features":[' + ",1" * 130_000 + "]}"), "not valid JSON"),
        (api_event('{"features":[1' + ",1" * 130_000 + "]}"), "'features' is larger than"),
        (api_event("[" * 100_000 + "]" * 100_000), "request body is nested too deeply"),
        (api_event({"features": [1, 2], "variant": "ModelZ"}), "unknown variant"),
        (api_event({"features": [1, 2], "variant": 3}), "'variant' must be a variant name"),
        (api_event({"features": [1, 2], "version": "v9"}), "'version' must be a version name"),
        (api_event({"features": [1, 2], "version": "v9.0.0"}), "no variant serves version"),
        (
            api_event({"features": [1, 2], "variant": "ModelA", "version": "v1.0.0"}),
            "not both",
        ),
    ],
)
def test_bad_input_is_rejected_without_side_effects(
    pipeline: Any, clock: Any, event: dict[str, Any], message: str
) -> None:
    invoke_calls = pipeline.record_calls(
        pre._client("sagemaker-runtime"), "sagemaker-runtime.InvokeEndpoint"
    )

    status, body = call(event)

    assert status == 400
    assert message in body["error"]
    assert invoke_calls == []
    assert pipeline.items() == []


def test_feature_count_is_enforced(pipeline: Any, clock: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("FEATURE_COUNT", "3")
    pipeline.queue(([1], "ModelA"))

    status, body = call(api_event({"features": [1, 2]}))
    assert status == 400
    assert body["error"] == "'features' must have 3 values, got 2"
    assert pipeline.items() == []

    status, _ = call(api_event({"features": [1, 2, 3]}))
    assert status == 200


def test_ssm_is_read_once_per_ttl(pipeline: Any, clock: Any) -> None:
    pipeline.queue(([1], "ModelA"), ([2], "ModelA"), ([3], "ModelA"))
    ssm_calls: list[str] = []
    pre._client("ssm").meta.events.register(
        "before-call.ssm", lambda model, **kw: ssm_calls.append(model.name)
    )

    assert call(api_event({"features": [1]}))[0] == 200
    assert ssm_calls == ["GetParameters"]

    clock.advance(29)
    assert call(api_event({"features": [2]}))[0] == 200
    assert ssm_calls == ["GetParameters"]

    clock.advance(2)
    assert call(api_event({"features": [3]}))[0] == 200
    assert ssm_calls == ["GetParameters", "GetParameters"]


def test_cache_ttl_comes_from_env(pipeline: Any, clock: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("SSM_CACHE_TTL_SECONDS", "5")
    pipeline.queue(([1], "ModelA"), ([2], "ModelA"))
    ssm_calls: list[str] = []
    pre._client("ssm").meta.events.register(
        "before-call.ssm", lambda model, **kw: ssm_calls.append(model.name)
    )

    call(api_event({"features": [1]}))
    clock.advance(6)
    call(api_event({"features": [2]}))

    assert ssm_calls == ["GetParameters", "GetParameters"]


def test_endpoint_error_is_502_and_stores_nothing(pipeline: Any, clock: Any) -> None:
    pipeline.fail_calls(pre._client("sagemaker-runtime"), "sagemaker-runtime.InvokeEndpoint", bool)

    status, body = call(api_event({"features": [1, 2]}))

    assert status == 502
    assert body["error"] == "model endpoint error: ModelError"
    assert pipeline.items() == []


@pytest.mark.parametrize(
    "response_body",
    ["not json", json.dumps({"outputs": [1]}), json.dumps({"predictions": [1, 2]})],
)
def test_unusable_endpoint_response_is_502(pipeline: Any, clock: Any, response_body: str) -> None:
    pipeline.queue((response_body, "ModelA"))

    status, body = call(api_event({"features": [1, 2]}))

    assert status == 502
    assert "model endpoint returned" in body["error"]
    assert pipeline.items() == []


def test_unknown_served_variant_falls_back_to_active_version(pipeline: Any, clock: Any) -> None:
    pipeline.queue(([0.3], "ModelC"))
    stream = io.StringIO()
    capture = logging.StreamHandler(stream)
    capture.setFormatter(pre.logger.handlers[0].formatter)
    pre.logger.addHandler(capture)
    try:
        status, body = call(api_event({"features": [1.0]}))
    finally:
        pre.logger.removeHandler(capture)

    assert status == 200
    assert body["modelVersion"] == "v1.0.0"
    assert pipeline.items()[0]["invokedVariant"] == "ModelC"
    logs = [json.loads(line) for line in stream.getvalue().splitlines()]
    warning = next(entry for entry in logs if entry["level"] == "WARNING")
    assert warning["variant"] == "ModelC"
    assert warning["modelVersion"] == "v1.0.0"
    stored = next(entry for entry in logs if entry["message"] == "prediction stored")
    assert stored["predictionId"] == body["predictionId"]
    assert "latency_ms" in stored


def test_unexpected_error_is_generic_500(pipeline: Any, clock: Any, monkeypatch: Any) -> None:
    pipeline.queue(([1], "ModelA"))
    monkeypatch.setenv("TABLE_NAME", "no-such-table")

    status, body = call(api_event({"features": [1]}))

    assert status == 500
    assert body == {"error": "internal error"}
