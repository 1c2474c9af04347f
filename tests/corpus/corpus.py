"""Reading the bad-input corpus: the YAML files beside this module, one list of cases each."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from lambdas.preprocess.handler import features_hash

HERE = Path(__file__).resolve().parent
FILLER = "0.5"
HEADER = "X-Features-Hash"  # api.cache.key_header in config/pipeline.yaml
FEATURE_COUNT = 30  # lambdas.feature_count in config/pipeline.yaml


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


def api_body(case: dict[str, Any]) -> str:
    """The request body a case describes (see tests/corpus/api.yaml)."""
    if "json" in case:
        return json.dumps(case["json"])
    if "raw" in case:
        return str(case["raw"])
    if "deep" in case:
        return "[" * case["deep"] + "]" * case["deep"]
    if "features_raw" in case:
        return '{"features": [' + ", ".join(number_texts(case["features_raw"])) + "]}"
    count = case.get("features", FEATURE_COUNT)
    body = json.dumps({"features": [float(FILLER)] * count, **(case.get("extra") or {})})
    if "size" in case:
        body += " " * (case["size"] - len(body))
    return body


def cache_key(case: dict[str, Any], body: str) -> list[str]:
    """The X-Features-Hash values a case sends (see tests/corpus/api.yaml)."""
    if "header" in case:
        return [case["header"]]
    try:
        parsed = json.loads(body)
        features = [float(v) for v in parsed["features"]]
        variant, version = parsed.get("variant"), parsed.get("version")
    except (ValueError, TypeError, KeyError, RecursionError):
        return ["0" * 64]
    right = features_hash(features, variant, version)
    return {
        "hash": [right],
        "none": [],
        "twice": [right, right],
        "other": [features_hash([9.0] * len(features), variant, version)],
        "other-variant": [features_hash(features, "ModelB", version)],
        "upper": [right.upper()],
        "newline": [right + "\n"],
        "long-suffix": [right + "-" + "x" * 65],
    }[case.get("hash", "hash")]
