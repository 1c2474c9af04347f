"""Error kinds as data, and the one mapping from errors to exit codes."""

from __future__ import annotations

from enum import IntEnum

from botocore.exceptions import ClientError

NO_CREDENTIALS = (
    "no AWS credentials found: configure a profile (`aws configure`) or pass --profile, set "
    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or use the embedded AWS with --local."
)


class ExitStatus(IntEnum):
    OK = 0
    ERROR = 1
    # Invalid input (spec, arguments).
    USAGE = 2


class MlpipeError(Exception):
    """An error mlpipe explains to the user: what is wrong and how to fix it."""

    exit_status = ExitStatus.ERROR


class SpecError(MlpipeError):
    """The spec file is invalid; one line per problem: `file: key.path: reason`."""

    exit_status = ExitStatus.USAGE

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        super().__init__("\n".join(lines))


class UsageError(MlpipeError):
    exit_status = ExitStatus.USAGE


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def describe_error(exc: BaseException) -> str:
    """One line for a summary: the AWS error code and message, or the exception text."""
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        op = getattr(exc, "operation_name", "")
        return f"{err.get('Code', 'Error')}: {err.get('Message', '')} ({op})".strip()
    return f"{type(exc).__name__}: {exc}" if not isinstance(exc, MlpipeError) else str(exc)


def already_exists(exc: BaseException) -> bool:
    """AWS refused a create because what it would make exists."""
    code = error_code(exc)
    if "AlreadyExists" in code or "AlreadyOwned" in code or code in EXISTS_CODES:
        return True
    return "already exist" in str(exc).lower()  # SageMaker, Batch: a message, no code


EXISTS_CODES = frozenset(
    {
        "ConflictException",
        "ResourceConflictException",
        "ResourceInUseException",
        # WAFv2: a name taken in the scope (API_CreateWebACL.html, "Errors").
        "WAFDuplicateItemException",
    }
)


def met_itself(exc: BaseException) -> bool:
    """A call botocore retried after its answer was lost, refused because its first attempt
    made what it creates."""
    if not isinstance(exc, ClientError):
        return False
    retried = exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0)
    return bool(retried) and already_exists(exc)
