"""The client factory fails fast on connection errors and still retries throttling."""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError
from botocore.retries.adaptive import ClientRateLimiter
from botocore.retries.standard import ExponentialBackoff

from mlpipe.core.clients import CONNECT_TIMEOUT, Aws, AwsTarget
from mlpipe.core.errors import MlpipeError
from tests.stub_endpoint import ACCOUNT, StubEndpoint, closed_port


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's retries without their waits: the backoff delay, and the adaptive mode's
    client-side rate limit after a throttling answer (both botocore's, not mlpipe's)."""
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0)
    monkeypatch.setattr(ClientRateLimiter, "on_sending_request", lambda self, **_: None)


def counted(aws: Aws, service: str) -> tuple[Any, list[str]]:
    """The service's client and the list every attempt (retries included) is appended to."""
    client = aws.client(service)
    sent: list[str] = []
    client.meta.events.register("before-send", lambda **_: sent.append("attempt"))
    return client, sent


def test_connection_refused_is_not_retried_before_any_answer(fake_credentials: None) -> None:
    aws = Aws(AwsTarget(region="us-east-1", endpoint_url=f"http://127.0.0.1:{closed_port()}"))
    sts, sent = counted(aws, "sts")
    started = time.monotonic()
    with pytest.raises(EndpointConnectionError):
        sts.get_caller_identity()
    assert len(sent) == 1
    assert time.monotonic() - started < 1


def test_max_attempts_also_retries_connection_errors(
    fake_credentials: None, no_backoff: None
) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    aws = Aws(AwsTarget(region="us-east-1", endpoint_url=url, max_attempts=3))
    sts, sent = counted(aws, "sts")
    with pytest.raises(EndpointConnectionError):
        sts.get_caller_identity()
    assert len(sent) == 3


def test_connection_errors_are_transient_once_the_endpoint_answered(
    fake_credentials: None, no_backoff: None
) -> None:
    with StubEndpoint() as stub:
        aws = Aws(AwsTarget(region="us-east-1", endpoint_url=stub.url))
        sts, sent = counted(aws, "sts")
        assert aws.account == ACCOUNT
        stub.stop()
        with pytest.raises(EndpointConnectionError):
            sts.get_caller_identity()
    assert len(sent) == 1 + 10  # the answered call, then the default 10 attempts


def test_throttling_is_still_retried(fake_credentials: None, no_backoff: None) -> None:
    with StubEndpoint(throttle=2) as stub:
        aws = Aws(AwsTarget(region="us-east-1", endpoint_url=stub.url))
        answer = aws.client("sts").get_caller_identity()
    assert answer["Account"] == ACCOUNT
    assert answer["ResponseMetadata"]["RetryAttempts"] == 2
    assert stub.requests == 3


def test_connect_timeout_is_short(fake_credentials: None) -> None:
    aws = Aws(AwsTarget(region="us-east-1"))
    assert aws.client("sts").meta.config.connect_timeout == CONNECT_TIMEOUT <= 3


def test_sessions_share_one_parsed_copy_of_the_service_models(fake_credentials: None) -> None:
    first, second = Aws(AwsTarget(region="us-east-1")), Aws(AwsTarget(region="us-east-1"))
    first_model = first.client("sts").meta.service_model
    second_model = second.client("sts").meta.service_model
    assert first_model._service_description is second_model._service_description
    loader = second.session._session.get_component("data_loader")
    assert len(loader.search_paths) == len(set(loader.search_paths))


def test_an_unknown_profile_is_named(fake_credentials: None) -> None:
    with pytest.raises(MlpipeError, match="AWS profile not found"):
        Aws(AwsTarget(profile="no-such-profile", region="us-east-1"))
