"""What every resource of one run shares: AWS access, the spec, names, tags, waits."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

from mlpipe.core.clients import Aws
from mlpipe.core.transient import named
from mlpipe.spec import Names, Spec

T = TypeVar("T")

OWNER_TAG = "mlpipe:pipeline"
RESOURCE_TAG = "mlpipe:resource"

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

    def tags_for(self, key: str) -> dict[str, str]:
        return {**self.spec.tags, OWNER_TAG: self.names.pipeline_id, RESOURCE_TAG: key}

    def owns(self, tags: Mapping[str, str] | None) -> bool:
        return (tags or {}).get(OWNER_TAG) == self.names.pipeline_id

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
