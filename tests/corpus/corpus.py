"""Reading the bad-input corpus: the YAML files beside this module, one list of cases each."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

HERE = Path(__file__).resolve().parent
FILLER = "0.5"


def cases(kind: str) -> list[Any]:
    """The cases of `<kind>.yaml` as pytest params named by their ids."""
    entries = yaml.safe_load((HERE / f"{kind}.yaml").read_text(encoding="utf-8"))
    ids = [entry["id"] for entry in entries]
    assert len(ids) == len(set(ids)), f"{kind}.yaml repeats an id"
    return [pytest.param(entry, id=entry["id"]) for entry in entries]


def expand(text: str) -> str:
    """`{x*N}` becomes x repeated N times."""
    return re.sub(r"\{(.)\*(\d+)\}", lambda m: m[1] * int(m[2]), text)


def number_texts(items: list[str], total: int | None = None) -> list[str]:
    """JSON number texts: `{N more}` becomes N fillers; padded with fillers up to `total`."""
    out: list[str] = []
    for item in items:
        more = re.fullmatch(r"\{(\d+) more\}", item)
        out += [FILLER] * int(more[1]) if more else [expand(item)]
    if total is not None:
        out += [FILLER] * (total - len(out))
    return out
