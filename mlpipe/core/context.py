"""What every resource of one run shares: AWS access, the spec, names, tags, waits."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from mlpipe.core.clients import Aws
from mlpipe.core.diff import RUN_TAG
from mlpipe.core.errors import describe_error, error_code
from mlpipe.core.transient import named
from mlpipe.core.wait import Clock, Pending, TimedOut, poll

T = TypeVar("T")


class Settings(Protocol):
    """What the core reads of a spec: the tags every resource carries."""

    @property
    def tags(self) -> Mapping[str, str]: ...


class Naming(Protocol):
    """What the core reads of the names: the pipeline's identity, its tag value."""

    @property
    def pipeline_id(self) -> str: ...


SpecT = TypeVar("SpecT", bound=Settings)
NamesT = TypeVar("NamesT", bound=Naming)

OWNER_TAG = "mlpipe:pipeline"
RESOURCE_TAG = "mlpipe:resource"
THROTTLING = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "TooManyRequestsException",
        "SlowDown",
    }
)


def transient(exc: BaseException) -> bool:
    """An error a retry may not meet: no answer, a 5xx, throttling."""
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return status >= 500 or error_code(exc) in THROTTLING
    return isinstance(exc, BotoCoreError)


Progress = Callable[[str, str], None]


def _quiet(_key: str, _message: str) -> None:
    return None


@dataclass
class Context(Generic[SpecT, NamesT]):
    """The core knows the spec and the names only through `Settings` and `Naming`."""

    aws: Aws
    spec: SpecT
    names: NamesT
    # The time source and sleep of every wait and retry; tests pass a clock that never sleeps.
    clock: Clock = field(default_factory=Clock)
    consistency_timeout: float = 120.0
    progress: Progress = _quiet
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    create_attempts: int = 4

    def tags_for(self, key: str) -> dict[str, str]:
        return {**self.spec.tags, OWNER_TAG: self.names.pipeline_id, RESOURCE_TAG: key}

    def creation_tags(self, tags: Mapping[str, str]) -> dict[str, str]:
        """Tags to create a resource with: its own and the run that made it."""
        return {**tags, RUN_TAG: self.run}

    def create_once(self, key: str, create: Callable[[], T], find: Callable[[], T | None]) -> T:
        """A create AWS does not make idempotent, made safe to retry.

        `create` must call AWS through a client that does not retry (`Aws.client(...,
        once=True)`) and tag what it makes with `creation_tags`; `find` looks it up by those
        tags. After any error (a lost answer looks like a timeout or a 5xx), what an earlier
        attempt made is looked for and adopted; only when nothing is found, and the error was
        transient, is the create tried again.
        """

        def attempt() -> T | Pending:
            try:
                return create()
            except (BotoCoreError, ClientError) as exc:
                found = self._look_for(find)
                if found is None:
                    self.progress(key, f"create failed, nothing made: {describe_error(exc)}")
                    if transient(exc):
                        return Pending(exc, describe_error(exc))
                    raise
                self.progress(key, f"adopted what a failed create made ({describe_error(exc)})")
                return found

        return self._retry(attempt, math.inf, attempts=self.create_attempts)

    def _look_for(self, find: Callable[[], T | None]) -> T | None:
        """`find`, asked again a few times: a new resource may take a moment to be listed."""

        def attempt() -> T | Pending:
            found = find()
            return Pending(None, "not listed yet") if found is None else found

        try:
            return poll(attempt, timeout=math.inf, clock=self.clock, attempts=3)
        except TimedOut:
            return None

    def _retry(
        self, attempt: Callable[[], T | Pending], timeout: float, attempts: int | None = None
    ) -> T:
        """`poll` whose `Pending` values are the errors to retry: the last one is raised."""
        try:
            return poll(attempt, timeout=timeout, clock=self.clock, attempts=attempts)
        except TimedOut as exc:
            if exc.last is not None and isinstance(exc.last.value, BaseException):
                raise exc.last.value from None
            raise

    def owns(self, tags: Mapping[str, str] | None) -> bool:
        return (tags or {}).get(OWNER_TAG) == self.names.pipeline_id

    def tagged(self, key: str | None = None, *types: str) -> list[str]:
        """ARNs of the live resources tagged for this pipeline (and `key`), of `types` such as
        `kms:key`, sorted: the Resource Groups Tagging API finds them without their parents."""
        filters = [{"Key": OWNER_TAG, "Values": [self.names.pipeline_id]}]
        if key is not None:
            filters.append({"Key": RESOURCE_TAG, "Values": [key]})
        pages = (
            self.aws.client("resourcegroupstaggingapi")
            .get_paginator("get_resources")
            .paginate(TagFilters=filters, ResourceTypeFilters=list(types))
        )
        return sorted(m["ResourceARN"] for page in pages for m in page["ResourceTagMappingList"])

    def eventually(self, fn: Callable[[], T], *transient: str) -> T:
        """Call fn, retrying while it fails with one of the named entries of the table of
        transient errors (`mlpipe.core.transient`), within `consistency_timeout`."""
        entries = named(transient)

        def attempt() -> T | Pending:
            try:
                return fn()
            except ClientError as exc:
                if any(entry.matches(exc) for entry in entries):
                    return Pending(exc, describe_error(exc))
                raise

        return self._retry(attempt, self.consistency_timeout)
