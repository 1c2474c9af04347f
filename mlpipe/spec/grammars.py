"""The grammars of the spec's values that are not plain numbers or names: model versions,
SageMaker instance types and variant names, EventBridge schedules, AWS tag keys."""

from __future__ import annotations

import re

# A model version: SemVer 2.0 (https://semver.org) with a leading `v` and without build metadata,
# e.g. v1.2.3 or v2.0.0-rc.1: three numbers without leading zeros, then optionally `-` and
# dot-separated pre-release identifiers (numeric ones without leading zeros). At most 64
# characters. `\A...\Z` (not `^...$`, which also matches before a final newline): the whole
# value must match.
VERSION_RE = re.compile(
    r"\Av(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*)?\Z"
)
MAX_VERSION_LENGTH = 64


# A SageMaker instance type: `ml.` + family + size (every ProductionVariantInstanceType of
# botocore's SageMaker model has this form).
INSTANCE_TYPE = re.compile(
    r"ml\.[a-z]+[0-9]+[a-z0-9-]*\.(nano|micro|small|medium|large|xlarge|[1-9][0-9]*xlarge|metal(-[0-9]+xl)?)"
)


def check_instance_type(value: str) -> str:
    if not INSTANCE_TYPE.fullmatch(value):
        hint = f" (did you mean 'ml.{value}'?)" if INSTANCE_TYPE.fullmatch(f"ml.{value}") else ""
        raise ValueError(f"{value!r} is not a SageMaker instance type like ml.m5.large{hint}")
    return value


def check_version(value: str) -> str:
    """`value` if it is a model version (see VERSION_RE), else ValueError saying why."""
    if len(value) > MAX_VERSION_LENGTH:
        raise ValueError(f"a version has at most {MAX_VERSION_LENGTH} characters, got {len(value)}")
    if not VERSION_RE.match(value):
        raise ValueError(f"{value!r} is not a version like v1.2.3 or v2.0.0-rc.1")
    return value


# A SageMaker production variant name.
VARIANT_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")

# An AWS tag key.
TAG_KEY = re.compile(r"^[\w.:/=+\-@ ]{1,128}$")

# EventBridge's cron fields: name, lowest, highest, names for values, special characters.
# https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-scheduled-rule-pattern.html
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
CRON_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minutes", 0, 59, ()),
    ("hours", 0, 23, ()),
    ("day-of-month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 1, 7, _DAYS),
    ("year", 1970, 2199, ()),
)


def _cron_value(text: str, low: int, high: int, names: tuple[str, ...]) -> int:
    if text.upper() in names:
        return names.index(text.upper()) + low
    if not re.fullmatch(r"\d{1,4}", text) or not low <= int(text) <= high:
        named = f" or {names[0]}-{names[-1]}" if names else ""
        raise ValueError(f"{text!r} is not {low}-{high}{named}")
    return int(text)


def _cron_field(text: str, index: int) -> None:
    name, low, high, names = CRON_FIELDS[index]
    if text == "?":
        if name not in ("day-of-month", "day-of-week"):
            raise ValueError(f"{name}: ? is only for day-of-month or day-of-week")
        return
    for part in text.split(","):
        special = re.fullmatch(r"L|LW|(\d{1,2})W" if index == 2 else r"(\w+)(#[1-5]|L)", part)
        if special and index in (2, 4):  # L, LW, 15W; 6L, 2#1
            if special[1]:
                _cron_value(special[1], low, high, names)
            continue
        base, slash, step = part.partition("/")
        if slash and not (step.isdigit() and 0 < int(step) <= high):
            raise ValueError(f"{name}: step {step!r} of {part!r} is not 1-{high}")
        if base == "*":
            continue
        first, dash, last = base.partition("-")
        try:
            _cron_value(first, low, high, names)
            if dash:
                _cron_value(last, low, high, names)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None


def check_schedule(value: str, *, rate: bool = True) -> str:
    """An EventBridge schedule expression: cron(6 fields) or, if `rate`, rate(N unit)."""
    if rate and value.startswith("rate("):
        match = re.fullmatch(r"rate\(([1-9]\d{0,8}) (minutes?|hours?|days?)\)", value)
        if not match:
            raise ValueError(f"{value!r} is not a rate like rate(5 minutes) or rate(1 hour)")
        if (match[1] == "1") != (not match[2].endswith("s")):
            unit = match[2].rstrip("s") + ("" if match[1] == "1" else "s")
            raise ValueError(f"{value!r}: write rate({match[1]} {unit})")
        return value
    match = re.fullmatch(r"cron\(([^()]+)\)", value)
    fields = match[1].split(" ") if match else []
    if len(fields) != 6:
        raise ValueError(
            f"{value!r} is not a cron expression with six fields "
            "(minutes hours day-of-month month day-of-week year), e.g. cron(0 2 * * ? *)"
        )
    try:
        for index, text in enumerate(fields):
            _cron_field(text, index)
    except ValueError as exc:
        raise ValueError(f"{value!r}: {exc}") from None
    if (fields[2] == "?") == (fields[4] == "?"):
        raise ValueError(
            f"{value!r}: one of day-of-month and day-of-week must be ?, not both or neither"
        )
    return value
