"""Reading a spec file: a YAML loader with the spec's own limits, and one line per problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from mlpipe.core.errors import SpecError
from mlpipe.spec.document import Spec


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# Bounds on what a spec file may hold before anything is parsed into objects.
MAX_SPEC_BYTES = 1024 * 1024
MAX_SPEC_DEPTH = 32


class _SpecLimit(yaml.MarkedYAMLError):
    """A spec file breaks one of the loader's own rules (duplicate key, depth)."""


class _SpecLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML keeps the last one silently) and nesting
    deeper than MAX_SPEC_DEPTH (which would otherwise end in a RecursionError)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_SPEC_DEPTH:
                raise _SpecLimit(
                    None,
                    None,
                    f"nested deeper than {MAX_SPEC_DEPTH} levels",
                    self.peek_event().start_mark,  # type: ignore[no-untyped-call]
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` keys may be overridden by the mapping's own
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:
                continue  # an unhashable key: the base class reports it
            if first is not key_node.start_mark:
                raise _SpecLimit(
                    None,
                    None,
                    f"duplicate key {key!r} (first at line {first.line + 1})",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep)


def load_spec(path: str | Path) -> Spec:
    """Load and validate a spec file; every problem becomes one `file: key: reason` line."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise SpecError([f"{path}: {size} bytes; a spec has at most {MAX_SPEC_BYTES}"])
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise SpecError([f"{path}: file not found (pass --spec PATH)"]) from exc
    except OSError as exc:
        raise SpecError([f"{path}: cannot read: {exc.strerror or exc}"]) from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SpecError(
            [f"{path}: line {line}: byte {exc.start} (0x{data[exc.start]:02x}) is not UTF-8"]
        ) from exc
    try:
        raw = yaml.load(text, Loader=_SpecLoader)  # a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        kind = "" if isinstance(exc, _SpecLimit) else "not valid YAML: "
        raise SpecError([f"{path}:{where}: {kind}{getattr(exc, 'problem', exc)}"]) from exc
    except RecursionError as exc:
        raise SpecError([f"{path}: nested too deeply"]) from exc
    if not isinstance(raw, dict):
        raise SpecError([f"{path}: the spec must be a mapping of sections"])
    try:
        return Spec.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = _loc(err["loc"])
            reason = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                reason = "unknown key (check its spelling and section)"
            lines.append(f"{path}: {where}: {reason}" if where else f"{path}: {reason}")
        raise SpecError(lines) from exc
