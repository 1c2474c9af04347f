"""One boto3 session per run, cached thread-safe clients, and an API call log."""

from __future__ import annotations

import os
import threading
from collections import Counter
from dataclasses import dataclass, field
from functools import cache, cached_property
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.exceptions import NoCredentialsError, NoRegionError, ProfileNotFound
from botocore.loaders import Loader

from mlpipe import __version__
from mlpipe.core.errors import NO_CREDENTIALS, MlpipeError

READ_PREFIXES = ("Describe", "Get", "List", "Head", "Query", "Scan", "Lookup", "Search", "BatchGet")
LOCAL_REGION = "us-east-1"
LOCAL_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
DEFAULT_MAX_ATTEMPTS = 10
# Seconds to open a TCP connection (botocore's default is 60): an unreachable endpoint is
# reported within seconds, not minutes.
CONNECT_TIMEOUT = 2.0


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
    # Attempts per call for throttling and transient errors (botocore's adaptive mode); when
    # given, connection errors are retried as many times even before a first answer.
    max_attempts: int | None = None


class _SearchPaths(list[str]):
    """A loader's search path: boto3 appends its data directory to it for every session."""

    def append(self, path: str) -> None:
        if path not in self:
            super().append(path)


@cache
def process_loader(data_path: str | None) -> Loader:
    """One botocore loader per process: botocore parses a service's JSON model (megabytes for
    EC2 or SageMaker) once per loader, and would make a loader for every session."""
    paths = data_path.split(os.pathsep) if data_path else []
    return Loader(
        extra_search_paths=_SearchPaths(os.path.expanduser(os.path.expandvars(p)) for p in paths)
    )


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
            retries={
                "mode": "adaptive",
                # Attempts, the first included (botocore's "max_attempts" counts retries).
                "total_max_attempts": self.target.max_attempts or DEFAULT_MAX_ATTEMPTS,
            },
            connect_timeout=CONNECT_TIMEOUT,
            user_agent_extra=f"mlpipe/{__version__}",
        )
        # Set once any call got an answer: the endpoint exists and the network works.
        self._answered = threading.Event()

    def _session(self) -> boto3.session.Session:
        core = botocore.session.get_session()
        if self.target.profile is not None and not self.target.local:
            core.set_config_variable("profile", self.target.profile)
        loader = process_loader(core.get_config_variable("data_path"))  # reads the profile
        core.register_component("data_loader", loader)
        region = self.target.region
        if self.target.local:
            region = region or LOCAL_REGION
            session = boto3.session.Session(
                botocore_session=core, region_name=region, **LOCAL_CREDENTIALS
            )
        else:
            session = boto3.session.Session(botocore_session=core, region_name=region)
        return session

    @property
    def region(self) -> str:
        region = self.session.region_name
        if not region:
            raise MlpipeError(
                "no AWS region configured: pass --region, set AWS_REGION, or set a region "
                "in your profile."
            )
        return str(region)

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
                event = client.meta.service_model.service_id.hyphenize()
                # First: the first non-None answer to needs-retry decides (botocore.endpoint).
                client.meta.events.register_first(f"needs-retry.{event}", self._fail_fast)
                self._clients[f"{service}:once" if once else service] = client
            return client

    def _fail_fast(
        self, response: Any = None, caught_exception: Exception | None = None, **_: Any
    ) -> bool | None:
        """No retry for a connection error (refused, DNS, connect timeout) until the endpoint
        has answered once, unless max_attempts was chosen: botocore retries them as transient,
        which takes 10-30 s to report a wrong or unreachable endpoint. After an answer they
        are transient again and retried by the adaptive mode, as throttling always is."""
        if response is not None:
            self._answered.set()
            return None
        if (
            isinstance(caught_exception, BotoConnectionError)
            and self.target.max_attempts is None
            and not self._answered.is_set()
        ):
            return False
        return None

    def _recorder(self, service: str) -> Any:
        def record(model: Any, **_: Any) -> None:
            self.log.record(service, model.name)

        return record

    @cached_property
    def _identity(self) -> dict[str, Any]:
        try:
            return dict(self.client("sts").get_caller_identity())
        except NoCredentialsError as exc:
            raise MlpipeError(NO_CREDENTIALS) from exc

    @property
    def account(self) -> str:
        return str(self._identity["Account"])

    @property
    def caller_arn(self) -> str:
        """Who runs mlpipe: recorded with every model operation."""
        return str(self._identity["Arn"])

    @property
    def partition(self) -> str:
        return str(self.session.get_partition_for_region(self.region))
