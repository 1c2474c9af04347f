"""Lambda in the embedded AWS.

- ``GetAccountSettings``: the account's concurrency quota (``MLPIPE_LOCAL_LAMBDA_CONCURRENCY``,
  default 1000, the quota of an established account; new accounts start at 10) and what is left
  unreserved.
- ``PutFunctionConcurrency`` refuses a reservation that leaves less unreserved than AWS keeps:
  100, or the whole quota when it is below 100 ("Lambda always reserves 100 units of concurrency
  for your functions that don't explicitly reserve concurrency",
  https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html).
- ``UpdateFunctionConfiguration`` applies ``TracingConfig`` and ``KMSKeyArn``.
- Records reach a function through its event source mapping, polled by the stream runtime
  (:mod:`mlpipe.local.stream`), not on every ``PutRecord``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from moto.awslambda import urls
from moto.awslambda.exceptions import InvalidParameterValueException
from moto.awslambda.models import LambdaBackend, LambdaFunction
from moto.awslambda.responses import LambdaResponse

from mlpipe.local.moto_ext import install_declared, new_method, wrapper_of

DEFAULT_QUOTA = 1000
ROUTE = r"{0}/(?P<api_version>[^/]+)/account-settings/?$"


def quota() -> int:
    raw = os.environ.get("MLPIPE_LOCAL_LAMBDA_CONCURRENCY", "")
    return int(raw) if raw.isdigit() else DEFAULT_QUOTA


def minimum_unreserved(limit: int) -> int:
    return min(100, limit)


def _reserved(backend: LambdaBackend, besides: str = "") -> int:
    return sum(
        int(fn.reserved_concurrency or 0)
        for fn in backend.list_functions()
        if fn.function_name != besides
    )


@wrapper_of(LambdaBackend, "put_function_concurrency")
def _put_concurrency(original: Callable[..., Any]) -> Callable[..., Any]:
    def put(self: LambdaBackend, function_name: str, reserved: str) -> Any:
        name = self.get_function(function_name).function_name
        limit = quota()
        floor = minimum_unreserved(limit)
        if limit - _reserved(self, besides=name) - int(reserved) < floor:
            raise InvalidParameterValueException(
                "Specified ReservedConcurrentExecutions for function decreases account's "
                f"UnreservedConcurrentExecution below its minimum value of [{floor}]."
            )
        return original(self, function_name, reserved)

    return put


@new_method(LambdaResponse, "get_account_settings")
def _get_account_settings(self: LambdaResponse) -> Any:
    backend = self.backend
    functions = list(backend.list_functions())
    code = sum(int(fn.code_size or 0) for fn in functions)
    limit = quota()
    settings = {
        "AccountLimit": {
            "TotalCodeSize": 80530636800,
            "CodeSizeUnzipped": 262144000,
            "CodeSizeZipped": 52428800,
            "ConcurrentExecutions": limit,
            "UnreservedConcurrentExecutions": limit - _reserved(backend),
        },
        "AccountUsage": {"TotalCodeSize": code, "FunctionCount": len(functions)},
    }
    return 200, {}, json.dumps(settings)


@wrapper_of(LambdaFunction, "update_configuration")
def _function_configuration(original: Callable[..., dict[str, Any]]) -> Callable[..., Any]:
    """UpdateFunctionConfiguration also sets TracingConfig and KMSKeyArn ("" removes the key)."""

    def update(self: LambdaFunction, config_updates: dict[str, Any]) -> dict[str, Any]:
        if "TracingConfig" in config_updates:
            mode = (config_updates["TracingConfig"] or {}).get("Mode", "PassThrough")
            self.tracing_config = {"Mode": mode}
        if "KMSKeyArn" in config_updates:
            self.kms_key_arn = config_updates["KMSKeyArn"] or None
        return original(self, config_updates)

    return update


@wrapper_of(LambdaBackend, "send_kinesis_message")
def _polled_by_the_stream_runtime(original: Callable[..., Any]) -> Callable[..., None]:
    """Records reach a function through its event source mapping, polled by the stream
    runtime (`mlpipe.local.stream`) with the mapping's batch size, window and retries, as the
    Lambda service does. moto would instead run the function (in Docker) on every PutRecord."""

    def send_kinesis_message(self: LambdaBackend, *args: Any, **kwargs: Any) -> None:
        return None

    del original
    return send_kinesis_message


def install() -> None:
    install_declared(__name__)
    urls.url_paths.setdefault(ROUTE, LambdaResponse.dispatch)
