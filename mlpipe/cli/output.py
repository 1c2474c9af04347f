"""Where output goes: data on stdout, progress and messages on stderr."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from rich.console import Console

out = Console(highlight=False, soft_wrap=True, emoji=False)
stderr = Console(stderr=True, highlight=False, emoji=False, soft_wrap=True)


def err(message: str) -> None:
    stderr.print(message, markup=False)


def emit_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


def emit(data: Any, as_json: bool, render: Callable[[Any], Any]) -> None:
    """`data` as JSON on stdout, or the table `render` makes of it."""
    if as_json:
        emit_json(data)
    else:
        out.print(render(data))
