"""The embedded AWS's latency profile: which call a request is, and how long it is held."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest

from mlpipe.local import latency

SIGNED = "AWS4-HMAC-SHA256 Credential=testing/20261130/us-east-1/{service}/aws4_request, X=y"


def request(service: str, method: str = "POST", path: str = "/", body: bytes = b"", **headers: str):
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "HTTP_AUTHORIZATION": SIGNED.format(service=service),
    }
    environ.update({f"HTTP_{k.upper()}": v for k, v in headers.items()})
    return environ, body


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """The waits the middleware would make, recorded instead of slept."""
    waits: list[float] = []
    monkeypatch.setattr(latency.time, "sleep", waits.append)
    yield waits
    latency.install(None)


def test_a_request_is_named_by_its_signature_and_its_protocol() -> None:
    assert latency.classify(*request("sagemaker", x_amz_target="SageMaker.CreateEndpoint")) == (
        "sagemaker",
        "CreateEndpoint",
    )
    assert latency.classify(*request("ec2", body=b"Action=CreateVpcEndpoint&Version=2016")) == (
        "ec2",
        "CreateVpcEndpoint",
    )
    assert latency.classify(*request("lambda", path="/2015-03-31/functions")) == (
        "lambda",
        "CreateFunction",
    )
    assert latency.classify(*request("lambda", "DELETE", "/2015-03-31/functions/f")) == (
        "lambda",
        "DeleteFunction",
    )
    assert latency.classify(*request("s3", "PUT", "/bucket")) == ("s3", "PUT /bucket")


def test_the_profile_scales_what_is_awaited_only() -> None:
    profile = latency.Profile(factor=0.01)
    round_trip = latency.AWS_ROUND_TRIP.seconds
    assert profile.seconds("sagemaker", "CreateEndpoint") == pytest.approx(
        (480 + round_trip) * 0.01
    )
    assert profile.seconds("apigateway", "CreateStage") == pytest.approx(round_trip * 0.01)
    assert profile.seconds("kms", "CreateKey") == pytest.approx(round_trip * 0.01)


def test_the_middleware_holds_each_call_then_lets_moto_answer_it(held: list[float]) -> None:
    seen: list[bytes] = []

    def moto(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"])))
        return [b"ok"]

    app = latency.middleware(moto)
    environ, _ = request("ec2", body=b"Action=DeleteVpcEndpoints")
    assert app(environ, None) == [b"ok"] and held == []  # no profile: not held

    latency.install(latency.Profile(factor=0.5))
    environ, body = request("ec2", body=b"Action=DeleteVpcEndpoints")
    assert app(environ, None) == [b"ok"]
    assert seen == [b"Action=DeleteVpcEndpoints", body]  # moto still reads the whole body
    assert held == [pytest.approx((120 + latency.AWS_ROUND_TRIP.seconds) * 0.5)]
    assert latency.calls() == [("ec2", "DeleteVpcEndpoints", held[0])]
