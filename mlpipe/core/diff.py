"""A generic differ over AWS-shaped dicts, and the normalisers that make comparisons fair.

Rules: a key the desired state leaves out, or sets to None, is not managed and never compared.
Dicts are compared key by key; everything else (lists included) as a whole value, so resources
normalise lists (sorted, canonical) before they reach the differ. Paths listed as exact (tags)
are compared as whole dicts, so an extra key on the live side is a change.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# The tag naming the run that created a resource: set once, never a difference.
RUN_TAG = "mlpipe:run"


class Unknown:
    """A value only known once a dependency has been created (an ARN, an id)."""

    def __init__(self, ref: str) -> None:
        self.ref = ref

    def __repr__(self) -> str:
        return "(known after apply)"

    def __eq__(self, other: object) -> bool:
        return False

    def __hash__(self) -> int:
        return hash(self.ref)


@dataclass(frozen=True)
class Change:
    path: str
    before: Any
    after: Any
    replace: bool = False


@dataclass(frozen=True)
class Diff:
    changes: tuple[Change, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.changes)

    @property
    def replace(self) -> bool:
        return any(c.replace for c in self.changes)

    def touches(self, prefix: str) -> bool:
        return any(_under(c.path, prefix) for c in self.changes)

    def without(self, prefix: str) -> Diff:
        """The changes not under `prefix`."""
        return Diff(tuple(c for c in self.changes if not _under(c.path, prefix)))

    def paths(self) -> list[str]:
        return [c.path for c in self.changes]


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + ".")


def diff(
    current: Mapping[str, Any],
    desired: Mapping[str, Any],
    *,
    ignore: Iterable[str] = (),
    replace_on: Iterable[str] = (),
    exact: Iterable[str] = ("Tags",),
) -> Diff:
    ignore, replace_on, exact = tuple(ignore), tuple(replace_on), tuple(exact)
    changes: list[Change] = []

    def walk(cur: Any, want: Any, path: str) -> None:
        if want is None or any(_under(path, p) for p in ignore):
            return
        if isinstance(want, Mapping) and isinstance(cur, Mapping) and path not in exact:
            for key, value in want.items():
                walk(cur.get(key), value, f"{path}.{key}" if path else key)
            return
        if path in exact and isinstance(cur, Mapping):
            cur = {k: v for k, v in cur.items() if k != RUN_TAG}
        if isinstance(want, Unknown) or cur != want:
            replace = any(_under(path, p) for p in replace_on)
            changes.append(Change(path, cur, want, replace))

    walk(current, desired, "")
    return Diff(tuple(changes))


def contains_unknown(value: Any) -> bool:
    if isinstance(value, Unknown):
        return True
    if isinstance(value, Mapping):
        return any(contains_unknown(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(contains_unknown(v) for v in value)
    return False


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def policy(document: str | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Canonical IAM-style policy: parsed, single values as sorted lists, statements by Sid."""
    if document is None:
        return None
    doc = json.loads(document) if isinstance(document, str) else dict(document)
    statements = []
    for raw in _as_list(doc.get("Statement", [])):
        stmt: dict[str, Any] = {}
        for key, value in raw.items():
            if key in ("Action", "NotAction", "Resource", "NotResource"):
                stmt[key] = sorted(_as_list(value), key=str)
            elif key == "Principal" and isinstance(value, Mapping):
                stmt[key] = {k: sorted(_as_list(v), key=str) for k, v in value.items()}
            else:
                stmt[key] = value
        statements.append(stmt)
    statements.sort(key=lambda s: str(s.get("Sid", "")))
    return {"Version": doc.get("Version", "2012-10-17"), "Statement": statements}


def tags_from_list(
    items: Iterable[Mapping[str, str]] | None, key: str = "Key", value: str = "Value"
) -> dict[str, str]:
    """`[{"Key": k, "Value": v}]` → `{k: v}`, without AWS-reserved `aws:` tags."""
    return {t[key]: t[value] for t in items or () if not str(t[key]).startswith("aws:")}


def tags_to_list(
    tags: Mapping[str, str], key: str = "Key", value: str = "Value"
) -> list[dict[str, str]]:
    return [{key: k, value: v} for k, v in sorted(tags.items())]


def without_aws_tags(tags: Mapping[str, str] | None) -> dict[str, str]:
    return {k: v for k, v in (tags or {}).items() if not k.startswith("aws:")}


def show(value: Any, limit: int = 120) -> str:
    """A short, single-line rendering of a value for plans and summaries."""
    if isinstance(value, Unknown):
        return repr(value)
    if value is None:
        return "(none)"
    text = json.dumps(value, sort_keys=True, default=repr) if not isinstance(value, str) else value
    text = json.dumps(text) if isinstance(value, str) else text
    return text if len(text) <= limit else text[: limit - 1] + "…"
