"""The preprocess handler checks the API cache key header against the request it came with."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lambdas.preprocess import handler as pre
from mlpipe.ops.client import features_hash as client_hash

HEADER = "X-Features-Hash"


@pytest.fixture
def clock(pipeline: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("CACHE_KEY_HEADER", HEADER)
    return pipeline.fresh(pre)


def event(body: dict[str, Any], *values: str) -> dict[str, Any]:
    return {
        "body": json.dumps(body),
        "headers": {HEADER.lower(): values[-1]} if values else None,
        "multiValueHeaders": {HEADER.lower(): list(values)} if values else None,
    }


def call(evt: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = pre.handler(evt, None)
    return response["statusCode"], json.loads(response["body"])


@pytest.mark.parametrize(
    ("features", "variant", "version"),
    [([1, 2.5], None, None), ([0.1, -3], "ModelA", None), ([7], None, "v1.0.0")],
)
def test_the_client_and_the_handler_compute_the_same_hash(
    features: list[float], variant: str | None, version: str | None
) -> None:
    assert client_hash(features, variant, version) == pre.features_hash(features, variant, version)


def test_the_hash_covers_the_variant_and_the_version() -> None:
    keys = {
        pre.features_hash([1, 2]),
        pre.features_hash([1, 2], "ModelA"),
        pre.features_hash([1, 2], "ModelB"),
        pre.features_hash([1, 2], None, "v1.0.0"),
    }
    assert len(keys) == 4
    assert pre.features_hash([1, 2]) == pre.features_hash([1.0, 2.0])


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ((), "header X-Features-Hash is required"),
        ((pre.features_hash([9, 9]),), "does not match the request's features_hash"),
        ((pre.features_hash([1, 2], "ModelB"),), "does not match"),
        ((pre.features_hash([1, 2]), pre.features_hash([1, 2])), "must be sent once, got 2"),
        (("abc",), "must be a SHA-256 hex digest"),
        ((pre.features_hash([1, 2]) + "\n",), "must be a SHA-256 hex digest"),
        ((pre.features_hash([1, 2]) + "-" + "x" * 65,), "must be a SHA-256 hex digest"),
    ],
)
def test_a_request_whose_key_does_not_name_it_is_refused_before_scoring(
    pipeline: Any, clock: Any, values: tuple[str, ...], message: str
) -> None:
    calls = pipeline.record_calls(
        pre._client("sagemaker-runtime"), "sagemaker-runtime.InvokeEndpoint"
    )
    status, body = call(event({"features": [1, 2], "variant": "ModelA"}, *values))
    assert status == 400
    assert message in body["error"]
    assert calls == [] and pipeline.items() == []


@pytest.mark.parametrize("suffix", ["", "-probe-3", "-0123.abc_Z"])
def test_a_matching_key_with_an_optional_suffix_is_scored(
    pipeline: Any, clock: Any, suffix: str
) -> None:
    pipeline.queue(([0.5], "ModelA"))
    key = pre.features_hash([1, 2], "ModelA") + suffix
    status, body = call(event({"features": [1, 2], "variant": "ModelA"}, key))
    assert (status, body["invokedVariant"]) == (200, "ModelA")


def test_without_caching_no_header_is_needed(
    pipeline: Any, clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CACHE_KEY_HEADER")
    pipeline.queue(([0.5], "ModelA"))
    assert call(event({"features": [1, 2]}))[0] == 200
