"""CloudWatch dashboard tags in the embedded AWS: ``PutDashboard`` applies ``Tags`` when it
creates a dashboard (and ignores them on an update), ``TagResource``/``UntagResource``/
``ListTagsForResource`` take dashboard ARNs, and ``DeleteDashboards`` drops the tags. Alarms
that evaluate, notify and keep a history, and percentile statistics: :mod:`mlpipe.local.alarms`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from moto.cloudwatch.exceptions import ResourceNotFoundException as CloudWatchNotFound
from moto.cloudwatch.models import CloudWatchBackend
from moto.cloudwatch.responses import CloudWatchResponse

from mlpipe.local.moto_ext import _wrap


def _dashboard_named(backend: CloudWatchBackend, arn: str) -> str | None:
    """The dashboard name in ``arn:<partition>:cloudwatch::<account>:dashboard/<name>``."""
    prefix = f"arn:{backend.partition}:cloudwatch::{backend.account_id}:dashboard/"
    return arn[len(prefix) :] if arn.startswith(prefix) else None


def _dashboard_tags(original: Callable[..., Any], operation: str) -> Callable[..., Any]:
    """TagResource/UntagResource/ListTagsForResource also take dashboard ARNs (moto: alarms
    and Contributor Insights rules only)."""

    def handle(self: CloudWatchBackend, arn: str, *args: Any) -> Any:
        name = _dashboard_named(self, arn)
        if name is None:
            return original(self, arn, *args)
        if name not in self.dashboards:
            raise CloudWatchNotFound()
        if operation == "tag":
            self.tagger.tag_resource(arn, self.tagger.convert_dict_to_tags_input(args[0]))
        elif operation == "untag":
            self.tagger.untag_resource_using_names(arn, args[0])
        return self.tagger.get_tag_dict_for_resource(arn)

    return handle


def _put_dashboard(original: Callable[..., Any]) -> Callable[..., Any]:
    """PutDashboard applies Tags when it creates the dashboard; on an update they are ignored."""

    def put(self: CloudWatchResponse) -> Any:
        backend = self.cloudwatch_backend
        name = self._get_param("DashboardName")
        created = name not in backend.dashboards
        result = original(self)
        tags = self._get_param("Tags", [])
        if created and tags and name in backend.dashboards:
            backend.tagger.tag_resource(backend.dashboards[name].arn, tags)
        return result

    return put


def _delete_dashboards(original: Callable[..., Any]) -> Callable[..., Any]:
    """DeleteDashboards also drops the tags of the dashboards it deletes."""

    def delete(self: CloudWatchBackend, dashboards: list[str]) -> Any:
        arns = [self.dashboards[name].arn for name in dashboards if name in self.dashboards]
        error = original(self, dashboards)
        if error is None:
            for arn in arns:
                self.tagger.delete_all_tags_for_resource(arn)
        return error

    return delete


def install() -> None:
    _wrap(CloudWatchBackend, "tag_resource", lambda f: _dashboard_tags(f, "tag"))
    _wrap(CloudWatchBackend, "untag_resource", lambda f: _dashboard_tags(f, "untag"))
    _wrap(CloudWatchBackend, "list_tags_for_resource", lambda f: _dashboard_tags(f, "list"))
    _wrap(CloudWatchResponse, "put_dashboard", _put_dashboard)
    _wrap(CloudWatchBackend, "delete_dashboards", _delete_dashboards)
