"""Deleting a Glue database or crawler deletes its tags in the embedded AWS too: moto keeps
them, so the Resource Groups Tagging API would go on listing a deleted resource (AWS lists only
resources that exist)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from moto.glue.models import GlueBackend
from moto.utilities.utils import get_partition


def _arn(backend: GlueBackend, kind: str, name: str) -> str:
    partition = get_partition(backend.region_name)
    return f"arn:{partition}:glue:{backend.region_name}:{backend.account_id}:{kind}/{name}"


def _untagging(kind: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def delete(self: GlueBackend, name: str, *args: Any, **kwargs: Any) -> Any:
            result = original(self, name, *args, **kwargs)
            self.tagger.delete_all_tags_for_resource(_arn(self, kind, name))
            return result

        return delete

    return make


def install() -> None:
    from mlpipe.local.moto_ext import _wrap as wrap

    wrap(GlueBackend, "delete_database", _untagging("database"))
    wrap(GlueBackend, "delete_crawler", _untagging("crawler"))
