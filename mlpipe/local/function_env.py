"""A local Lambda function's process environment: what points its boto3 at the embedded AWS,
and ``os.environ`` and boto3's default session swapped for the function's own while its code
runs (:mod:`mlpipe.local.functions` runs the code)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Mapping
from urllib.parse import urlsplit

import boto3
import boto3.session

__all__ = ["ENVIRONMENT_LOCK", "applied", "no_proxy", "runtime_environment"]

LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
# Handlers' environments are applied one at a time: os.environ is process-wide.
ENVIRONMENT_LOCK = threading.RLock()


def runtime_environment(
    endpoint_url: str, region: str, sagemaker_runtime_url: str | None = None
) -> dict[str, str]:
    """What points a handler's boto3 at the embedded AWS (and the local SageMaker runtime)."""
    env = {
        **LOCAL_CREDENTIALS,
        "AWS_SESSION_TOKEN": "testing",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_ENDPOINT_URL": endpoint_url,
    }
    if sagemaker_runtime_url:
        env["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"] = sagemaker_runtime_url
    return env


@contextlib.contextmanager
def applied(env: Mapping[str, str], session: boto3.session.Session | None) -> Iterator[None]:
    """``os.environ`` (every ``AWS_*`` of the host replaced by ``env``) and boto3's default
    session for the duration; call with ``ENVIRONMENT_LOCK`` held. Only the variables that
    differ are touched, so other threads never see an empty environment."""
    previous: dict[str, str | None] = {}
    saved_session = boto3.DEFAULT_SESSION
    try:
        for name in [n for n in os.environ if n.startswith("AWS_") and n not in env]:
            previous[name] = os.environ.pop(name)
        for name, value in env.items():
            previous.setdefault(name, os.environ.get(name))
            os.environ[name] = value
        boto3.DEFAULT_SESSION = session
        yield
    finally:
        boto3.DEFAULT_SESSION = saved_session
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def no_proxy(env: Mapping[str, str], base: Mapping[str, str]) -> dict[str, str]:
    """NO_PROXY extended with the hosts of the local endpoints: never send them to a proxy."""
    hosts = {urlsplit(v).hostname for k, v in env.items() if k.startswith("AWS_ENDPOINT_URL")}
    hosts.discard(None)
    if not hosts:
        return {}
    current = base.get("NO_PROXY") or base.get("no_proxy") or ""
    entries = [e for e in current.split(",") if e]
    merged = ",".join(dict.fromkeys([*entries, *sorted(h for h in hosts if h)]))
    return {"NO_PROXY": merged, "no_proxy": merged}
