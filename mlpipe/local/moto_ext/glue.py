"""Glue in the embedded AWS: ``UpdateCrawler`` (moto lacks it), crawlers that describe their
``LakeFormationConfiguration``, and deleting a database or crawler deletes its tags (moto keeps
them, so the Resource Groups Tagging API would go on listing a deleted resource; AWS lists only
resources that exist)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from moto.core.responses import ActionResult, EmptyResult
from moto.core.utils import utcnow
from moto.glue.exceptions import CrawlerRunningException
from moto.glue.models import FakeCrawler, GlueBackend
from moto.glue.responses import GlueResponse
from moto.utilities.utils import get_partition

from mlpipe.local.moto_ext import _wrap, install_declared, new_method, wrapper_of

_CRAWLER_FIELDS = {
    "Role": "role",
    "DatabaseName": "database_name",
    "Description": "description",
    "Targets": "targets",
    "Schedule": "schedule",
    "Classifiers": "classifiers",
    "TablePrefix": "table_prefix",
    "SchemaChangePolicy": "schema_change_policy",
    "RecrawlPolicy": "recrawl_policy",
    "LineageConfiguration": "lineage_configuration",
    "Configuration": "configuration",
    "CrawlerSecurityConfiguration": "crawler_security_configuration",
    "LakeFormationConfiguration": "lake_formation_configuration",
}


@new_method(GlueBackend, "update_crawler")
def _update_crawler(self: GlueBackend, name: str, changes: dict[str, Any]) -> None:
    crawler = self.get_crawler(name)
    if crawler.status in ("RUNNING", "STOPPING"):
        raise CrawlerRunningException(
            "Cannot update Crawler while running. Please stop the crawl and try again."
        )
    for key, attribute in _CRAWLER_FIELDS.items():
        if key in changes:
            # moto keeps the schedule as its cron string; an empty string removes it.
            setattr(crawler, attribute, changes[key])
    crawler.version += 1
    crawler.last_updated = utcnow()


@new_method(GlueResponse, "update_crawler")
def _update_crawler_action(self: GlueResponse) -> ActionResult:
    params = self.parameters
    self.glue_backend.update_crawler(params["Name"], params)
    return EmptyResult()


@wrapper_of(FakeCrawler, "as_dict")
def _crawler_as_dict(original: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    def as_dict(self: FakeCrawler) -> dict[str, Any]:
        data = original(self)
        lake_formation = getattr(self, "lake_formation_configuration", None)
        if lake_formation:
            data["LakeFormationConfiguration"] = lake_formation
        return data

    return as_dict


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
    install_declared(__name__)
    _wrap(GlueBackend, "delete_database", _untagging("database"))
    _wrap(GlueBackend, "delete_crawler", _untagging("crawler"))
