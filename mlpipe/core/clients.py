"""One boto3 session per run, cached thread-safe clients, and an API call log."""

from __future__ import annotations

import os
import threading
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import NoCredentialsError, NoRegionError, ProfileNotFound

from mlpipe import __version__
from mlpipe.core.errors import MlpipeError

READ_PREFIXES = ("Describe", "Get", "List", "Head", "Query", "Scan", "Lookup", "Search", "BatchGet")
LOCAL_REGION = "us-east-1"
LOCAL_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def is_write(operation: str) -> bool:
    """True for any API operation that can change state (anything not a pure read)."""
    return not operation.startswith(READ_PREFIXES)


@dataclass
class CallLog:
    """Every API call made through the factory's clients, as `service:Operation`."""

    calls: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, service: str, operation: str) -> None:
        with self._lock:
            self.calls.append(f"{service}:{operation}")

    def writes(self) -> list[str]:
        return [c for c in self.calls if is_write(c.split(":", 1)[1])]

    def count(self, call: str) -> int:
        return self.calls.count(call)

    def summary(self) -> Counter[str]:
        return Counter(self.calls)

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()


@dataclass(frozen=True)
class AwsTarget:
    """Where to send API calls: the user's profile/region and an optional endpoint override."""

    profile: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    local: bool = False
    max_attempts: int = 10


class Aws:
    """The client factory: one session, one client per service, shared across threads."""

    def __init__(self, target: AwsTarget | None = None) -> None:
        self.target = target or AwsTarget()
        self.log = CallLog()
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        try:
            self.session = self._session()
        except ProfileNotFound as exc:
            raise MlpipeError(
                f"AWS profile not found: {exc}. Check --profile / AWS_PROFILE "
                "(`aws configure list-profiles` lists them)."
            ) from exc
        self.endpoint_url = self.target.endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
        self.config = Config(
            retries={"mode": "adaptive", "max_attempts": self.target.max_attempts},
            user_agent_extra=f"mlpipe/{__version__}",
        )

    def _session(self) -> boto3.session.Session:
        region = self.target.region
        if self.target.local:
            region = region or LOCAL_REGION
            return boto3.session.Session(region_name=region, **LOCAL_CREDENTIALS)
        return boto3.session.Session(profile_name=self.target.profile, region_name=region)

    @property
    def region(self) -> str:
        region = self.session.region_name
        if not region:
            raise MlpipeError(
                "no AWS region configured: pass --region, set AWS_REGION, or set a region "
                "in your profile."
            )
        return region

    def client(self, service: str, *, once: bool = False) -> Any:
        """The service's client; `once`: one that never retries, for a create AWS does not
        make idempotent (`Context.create_once` decides what to do after a failed attempt)."""
        with self._lock:
            client = self._clients.get(f"{service}:once" if once else service)
            if client is None:
                config = self.config
                if once:
                    config = config.merge(Config(retries={"total_max_attempts": 1}))
                try:
                    client = self.session.client(
                        service,
                        region_name=self.region,
                        endpoint_url=self.endpoint_url,
                        config=config,
                    )
                except NoRegionError as exc:  # pragma: no cover - region checked above
                    raise MlpipeError(str(exc)) from exc
                client.meta.events.register("before-call", self._recorder(service))
                self._clients[f"{service}:once" if once else service] = client
            return client

    def _recorder(self, service: str) -> Any:
        def record(model: Any, **_: Any) -> None:
            self.log.record(service, model.name)

        return record

    @cached_property
    def _identity(self) -> dict[str, Any]:
        try:
            return dict(self.client("sts").get_caller_identity())
        except NoCredentialsError as exc:
            raise MlpipeError(
                "no AWS credentials found: configure a profile (`aws configure`), pass "
                "--profile, set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run against the "
                "embedded AWS with --local."
            ) from exc

    @property
    def account(self) -> str:
        return str(self._identity["Account"])

    @property
    def caller_arn(self) -> str:
        """Who runs mlpipe: recorded with every model operation."""
        return str(self._identity["Arn"])

    @property
    def partition(self) -> str:
        return self.session.get_partition_for_region(self.region)
