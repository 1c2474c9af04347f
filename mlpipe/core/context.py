"""What every resource of one run shares: AWS access, the spec, names, tags, waits."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError
from tenacity import (
    Retrying,
    retry_if_exception,
    retry_if_result,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
)

from mlpipe.core.clients import Aws
from mlpipe.core.diff import RUN_TAG
from mlpipe.core.errors import describe_error, error_code
from mlpipe.core.transient import named
from mlpipe.spec import Names, Spec

T = TypeVar("T")

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
class Context:
    aws: Aws
    spec: Spec
    names: Names
    # tenacity wait strategy for eventual consistency; tests inject wait_none().
    wait: Any = field(default_factory=lambda: wait_exponential(multiplier=0.5, max=8))
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

        def attempt() -> T:
            try:
                return create()
            except (BotoCoreError, ClientError) as exc:
                found = self._look_for(find)
                if found is None:
                    self.progress(key, f"create failed, nothing made: {describe_error(exc)}")
                    raise
                self.progress(key, f"adopted what a failed create made ({describe_error(exc)})")
                return found

        retrying = Retrying(
            retry=retry_if_exception(transient),
            wait=self.wait,
            stop=stop_after_attempt(self.create_attempts),
            reraise=True,
        )
        return retrying(attempt)

    def _look_for(self, find: Callable[[], T | None]) -> T | None:
        """`find`, asked again a few times: a new resource may take a moment to be listed."""
        retrying = Retrying(
            retry=retry_if_result(lambda found: found is None),
            wait=self.wait,
            stop=stop_after_attempt(3),
            retry_error_callback=lambda state: None,
        )
        return retrying(find)

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

        def retryable(exc: BaseException) -> bool:
            return any(entry.matches(exc) for entry in entries)

        retrying = Retrying(
            retry=retry_if_exception(retryable),
            wait=self.wait,
            stop=stop_after_delay(self.consistency_timeout),
            reraise=True,
        )
        return retrying(fn)
