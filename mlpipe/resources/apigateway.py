"""API Gateway's ways, said once for the API, its stage, the API key and the usage plan.

Updates are JSON-patch-like operations whose values are all strings; a resource lists which
property goes to which patch path. APIs, API keys and usage plans have no unique name: they are
found by name in a listing, the one this pipeline owns (by its tags) kept and the other owned
ones reported as extras, and created once (`Resource.create_once`), adopting what a failed
attempt made. Their tags go on at creation and later through the tagging API by ARN.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from mlpipe.core.context import Context
from mlpipe.core.diff import Diff
from mlpipe.core.resource import Observed, Outputs, Resource


def replace(path: str, value: Any) -> dict[str, str]:
    """One UpdateX patch operation; API Gateway takes every value as a string."""
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return {"op": "replace", "path": path, "value": text}


def patches(
    desired: Mapping[str, Any], changes: Diff, paths: Mapping[str, str]
) -> list[dict[str, str]]:
    """A `replace` for each changed property of `paths` (dotted property → patch path)."""
    ops = []
    for prop, path in paths.items():
        if changes.touches(prop):
            value: Any = desired
            for part in prop.split("."):
                value = value[part]
            ops.append(replace(path, value))
    return ops


def affected(changes: Diff, path: str) -> bool:
    """A change at `path`, inside it, or at a parent of it (a whole missing block)."""
    return any(
        c.path == path or path.startswith(c.path + ".") or c.path.startswith(path + ".")
        for c in changes.changes
    )


def resource_arn(ctx: Context, path: str) -> str:
    """The ARN API Gateway tags a resource by, e.g. `/restapis/abc123/stages/prod`."""
    return f"arn:{ctx.aws.partition}:apigateway:{ctx.aws.region}::{path}"


def pages(ctx: Context, operation: str, **params: Any) -> Iterator[dict[str, Any]]:
    """Every item of a paginated API Gateway listing."""
    paginator = ctx.aws.client("apigateway").get_paginator(operation)
    for page in paginator.paginate(**params):
        yield from page.get("items", [])


def named(ctx: Context, operation: str, name: str, **params: Any) -> list[dict[str, Any]]:
    """The items called `name` (names are not unique): the ones this pipeline owns first."""
    found = [item for item in pages(ctx, operation, **params) if item.get("name") == name]
    return sorted(found, key=lambda item: (not ctx.owns(item.get("tags")), item["id"]))


def find_named(ctx: Context, operation: str, name: str, **params: Any) -> dict[str, Any] | None:
    """The item called `name`, preferring the one this pipeline owns."""
    return next(iter(named(ctx, operation, name, **params)), None)


class Named(Resource):
    """An API, API key or usage plan: found by name, created once, tagged at creation."""

    kind = "apigateway"
    tagging = "apigateway"
    listing: ClassVar[str]  # the paginated listing it is found in, e.g. "get_api_keys"
    creating: ClassVar[str]  # its create operation
    path: ClassVar[str]  # its path in ARNs, e.g. "/apikeys/{id}"

    def query(self) -> dict[str, Any]:
        """Parameters of the listing besides pagination."""
        return {}

    def state(self, item: dict[str, Any]) -> dict[str, Any]:
        """The listed item's state, besides its tags."""
        raise NotImplementedError

    def outputs(self, item: dict[str, Any]) -> Outputs:
        arn = resource_arn(self.ctx, self.path.format(id=item["id"]))
        return {"id": item["id"], "name": self.physical, "arn": arn}

    def observe(self, item: dict[str, Any]) -> Observed:
        tags = item.get("tags") or {}
        state = {**self.state(item), "Tags": tags}
        return Observed(state, self.outputs(item), self.ctx.owns(tags))

    def read(self) -> Observed | None:
        found = named(self.ctx, self.listing, self.physical, **self.query())
        if not found:
            return None
        kept, *others = found
        extras = tuple(self.observe(item) for item in others if self.ctx.owns(item.get("tags")))
        return dataclasses.replace(self.observe(kept), extras=extras)

    def _owned(self) -> dict[str, Any] | None:
        """What a failed create may have made: the item of this name this pipeline owns."""
        found = find_named(self.ctx, self.listing, self.physical, **self.query())
        return found if found is not None and self.ctx.owns(found.get("tags")) else None

    def create_named(self, desired: dict[str, Any], **params: Any) -> dict[str, Any]:
        """The object made with its name, description and tags, and `params`."""
        item: dict[str, Any] = self.create_once(
            "apigateway",
            lambda apigw: getattr(apigw, self.creating)(
                name=self.physical,
                description=desired["Description"],
                tags=self.ctx.creation_tags(desired["Tags"]),
                **params,
            ),
            self._owned,
        )
        return item
