"""Where output goes: data on stdout, progress and messages on stderr."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console

out = Console(highlight=False, soft_wrap=True, emoji=False)
stderr = Console(stderr=True, highlight=False, emoji=False, soft_wrap=True)


def err(message: str) -> None:
    stderr.print(message, markup=False)


def emit_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))
