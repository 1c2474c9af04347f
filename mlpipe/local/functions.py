"""Lambda functions of the embedded AWS, run in this process from their source directories.

The embedded AWS keeps each function's configuration (handler, timeout, memory, environment)
but cannot run its code without Docker. A :class:`LocalFunction` runs it here instead: the
handler module is loaded from the function's source directory (``lambdas/<package>``, the
directory its deployment package is built from) as a submodule of a package of its own, so
two functions, or two loads of the same function, never share module state, and the
directory is never put on ``sys.path``: a handler imports its own modules relatively, and the
shared modules its package carries at its root (``lambdas/common``) by their top-level names,
loaded for it alone (the pipeline's handlers import nothing else but the standard library and
boto3).

Environment. Handlers read ``os.environ`` when they are imported and when they run, and boto3
reads its endpoint, region and credentials from it when a client is created, so the
function's environment has to be the process environment while its code runs. Each
invocation (and the import that precedes the first one) therefore runs under one
process-wide lock with every ``AWS_*`` variable of the host removed from ``os.environ`` and
the function's own added: its configured variables, the reserved ``AWS_LAMBDA_*`` ones, fake
credentials, the region, and ``AWS_ENDPOINT_URL`` pointing at the embedded AWS (plus
``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME`` when a local SageMaker runtime is given). boto3's
default session is swapped for the function's own session over the same window, so cached
credentials and clients never cross between functions. Everything is put back afterwards.
Invocations are serialised: local functions run one at a time.

Like Lambda, a function keeps its loaded module between invocations (a warm environment),
loads it again after its configuration changes or after a timeout, and reports errors as
``errorMessage``/``errorType``/``stackTrace``. A timeout is detected once the handler
returns: its effects are not undone (Lambda would have stopped it).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import importlib.util
import io
import json
import logging
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import boto3
import boto3.session

import lambdas as lambda_sources
from mlpipe.local.function_env import ENVIRONMENT_LOCK, applied, no_proxy, runtime_environment

if TYPE_CHECKING:
    from mlpipe.local.metrics import MetricSink
    from mlpipe.naming import Names

__all__ = [
    "ClientFactory",
    "FunctionConfig",
    "FunctionNotFoundError",
    "Invocation",
    "LambdaContext",
    "LocalFunction",
    "LocalFunctions",
    "pipeline_sources",
    "runtime_environment",
]

log = logging.getLogger(__name__)

ClientFactory = Callable[[str], Any]
Clock = Callable[[], float]


class FunctionNotFoundError(LookupError):
    """The function does not exist in the embedded AWS, or has no local source directory."""


def pipeline_sources(names: Names) -> dict[str, Path]:
    """The pipeline's function names and the directories their packages are built from."""
    from mlpipe.resources.lambdas import PURPOSES, SOURCES

    return {names.function(p): SOURCES / p.replace("-", "_") for p in PURPOSES}


@contextlib.contextmanager
def _shared_modules(package: str) -> Iterator[None]:
    """While a handler is imported, its own copies of the shared modules (``lambdas/common``,
    which its deployment package carries at its root) answer to their top-level names."""
    names = [path.stem for path in lambda_sources.common_modules()]
    before = {name: sys.modules.get(name) for name in names}
    try:
        for name in names:
            sys.modules[name] = importlib.import_module(f"{package}.{name}")
        yield
    finally:
        for name, module in before.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


@dataclass(frozen=True)
class FunctionConfig:
    """What the embedded AWS says about a function (``GetFunction``'s Configuration)."""

    name: str
    arn: str
    handler: str
    timeout: int
    memory_mb: int
    variables: Mapping[str, str] = field(default_factory=dict)
    role: str = ""
    runtime: str = ""
    code_sha256: str = ""
    version: str = "$LATEST"

    @classmethod
    def from_lambda(cls, configuration: Mapping[str, Any]) -> FunctionConfig:
        return cls(
            name=configuration["FunctionName"],
            arn=configuration["FunctionArn"],
            handler=configuration.get("Handler") or "",
            timeout=int(configuration.get("Timeout") or 3),
            memory_mb=int(configuration.get("MemorySize") or 128),
            variables=dict((configuration.get("Environment") or {}).get("Variables") or {}),
            role=configuration.get("Role") or "",
            runtime=configuration.get("Runtime") or "",
            code_sha256=configuration.get("CodeSha256") or "",
            version=configuration.get("Version") or "$LATEST",
        )

    @property
    def log_group(self) -> str:
        return f"/aws/lambda/{self.name}"

    @property
    def region(self) -> str:
        return self.arn.split(":")[3]


@dataclass
class LambdaContext:
    """The context object Lambda passes to a Python handler."""

    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    aws_request_id: str
    log_group_name: str
    log_stream_name: str
    _deadline: float
    _clock: Clock

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - self._clock()) * 1000))


@dataclass(frozen=True)
class Invocation:
    """The outcome of one invocation: the JSON-decoded payload, or Lambda's error document."""

    function_name: str
    request_id: str
    payload: Any
    error: dict[str, Any] | None
    duration_ms: float

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def function_error(self) -> str | None:
        """``Invoke``'s X-Amz-Function-Error: "Unhandled" when the function failed."""
        return None if self.error is None else "Unhandled"


def _error(exc: BaseException, request_id: str, error_type: str | None = None) -> dict[str, Any]:
    frames = traceback.extract_tb(exc.__traceback__)
    return {
        "errorMessage": str(exc),
        "errorType": error_type or type(exc).__name__,
        "requestId": request_id,
        "stackTrace": traceback.format_list(frames),
    }


class LocalFunction:
    """One function's code, loaded from ``source`` and run with its configuration."""

    def __init__(
        self,
        config: FunctionConfig,
        source: Path,
        runtime_env: Mapping[str, str],
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        self.config = config
        self.source = Path(source)
        self.runtime_env = dict(runtime_env)
        self.clock = clock
        self.invocations = 0
        self._package: str | None = None
        self._handler: Callable[[Any, Any], Any] | None = None
        self._session: boto3.session.Session | None = None
        self._log_stream = f"local/[{config.version}]{uuid.uuid4().hex}"
        # What the handler prints (its loggers bind to it at import): Lambda sends the
        # function's output to CloudWatch Logs, and so does `LocalFunctions`.
        self.output = io.StringIO()

    @property
    def environment(self) -> dict[str, str]:
        """The function's environment as Lambda would set it."""
        config = self.config
        env = {
            **self.runtime_env,
            "AWS_LAMBDA_FUNCTION_NAME": config.name,
            "AWS_LAMBDA_FUNCTION_VERSION": config.version,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": config.log_group,
            "AWS_LAMBDA_LOG_STREAM_NAME": self._log_stream,
            "_HANDLER": config.handler,
            "LAMBDA_TASK_ROOT": str(self.source),
        }
        if config.runtime:
            env["AWS_EXECUTION_ENV"] = f"AWS_Lambda_{config.runtime}"
        # Reserved variables cannot be overridden by the function's own.
        return {**config.variables, **env, **no_proxy(env, os.environ)}

    @property
    def loaded(self) -> bool:
        return self._handler is not None

    def _load(self) -> Callable[[Any, Any], Any]:
        module_path, _, attribute = self.config.handler.rpartition(".")
        if not module_path or not attribute:
            raise _InitError(
                "Runtime.MalformedHandlerName",
                f"Bad handler '{self.config.handler}': not enough values to unpack",
            )
        package = f"_mlpipe_lambda_{uuid.uuid4().hex}"
        spec = importlib.machinery.ModuleSpec(package, None, is_package=True)
        spec.submodule_search_locations = [str(self.source), str(lambda_sources.COMMON)]
        sys.modules[package] = importlib.util.module_from_spec(spec)
        self._package = package
        try:
            with _shared_modules(package):
                module: ModuleType = importlib.import_module(f"{package}.{module_path}")
        except ImportError as exc:
            raise _InitError(
                "Runtime.ImportModuleError",
                f"Unable to import module '{module_path}': {exc}",
            ) from exc
        handler = getattr(module, attribute, None)
        if not callable(handler):
            raise _InitError(
                "Runtime.HandlerNotFound",
                f"Handler '{attribute}' missing on module '{module_path}'",
            )
        return handler  # type: ignore[no-any-return]

    def unload(self) -> None:
        """Drop the loaded module: the next invocation starts cold."""
        package, self._package = self._package, None
        self._handler = None
        self._session = None
        if package:
            for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
                del sys.modules[name]

    def invoke(self, event: Any) -> Invocation:
        """Run the handler with ``event`` (passed through JSON, as Lambda does)."""
        request_id = str(uuid.uuid4())
        config = self.config
        with ENVIRONMENT_LOCK:
            self.invocations += 1
            started = self.clock()
            env = self.environment
            if self._session is None:  # boto3 reads the profile variables at creation
                with applied(env, None):
                    self._session = boto3.session.Session()
            with (
                applied(env, self._session),
                contextlib.redirect_stdout(self.output),
                contextlib.redirect_stderr(self.output),
            ):
                print(f"START RequestId: {request_id} Version: {config.version}")
                payload, error = self._run(event, request_id, started)
            elapsed = self.clock() - started
            if error is None and elapsed > config.timeout:
                self.unload()  # Lambda stops a timed-out environment
                payload, error = (
                    None,
                    {
                        "errorMessage": (
                            f"{request_id} Task timed out after {float(config.timeout):.2f} seconds"
                        ),
                        "errorType": "Sandbox.Timedout",
                        "requestId": request_id,
                        "stackTrace": [],
                    },
                )
            self.output.write(f"END RequestId: {request_id}\n")
            self.output.write(
                f"REPORT RequestId: {request_id}\tDuration: {elapsed * 1000:.2f} ms\t"
                f"Memory Size: {config.memory_mb} MB\n"
            )
        return Invocation(config.name, request_id, payload, error, round(elapsed * 1000, 3))

    def take_output(self) -> tuple[str, list[str]]:
        """The log stream name and the lines printed since the last call."""
        with ENVIRONMENT_LOCK:
            lines = self.output.getvalue().splitlines()
            self.output.seek(0)
            self.output.truncate()
        return self._log_stream, lines

    def _run(self, event: Any, request_id: str, started: float) -> tuple[Any, dict | None]:
        config = self.config
        try:
            event = json.loads(json.dumps(event))
        except (TypeError, ValueError) as exc:
            return None, _error(exc, request_id, "Runtime.MarshalError")
        if self._handler is None:
            try:
                self._handler = self._load()
            except _InitError as exc:
                self.unload()
                return None, _error(exc, request_id, exc.error_type)
            except Exception as exc:  # an error while importing the handler module
                self.unload()
                return None, _error(exc, request_id)
        context = LambdaContext(
            function_name=config.name,
            function_version=config.version,
            invoked_function_arn=config.arn,
            memory_limit_in_mb=config.memory_mb,
            aws_request_id=request_id,
            log_group_name=config.log_group,
            log_stream_name=self._log_stream,
            _deadline=started + config.timeout,
            _clock=self.clock,
        )
        try:
            result = self._handler(event, context)
        except SystemExit as exc:  # the runtime process would have exited
            self.unload()
            return None, _error(exc, request_id, "Runtime.ExitError")
        except Exception as exc:
            return None, _error(exc, request_id)
        try:
            return json.loads(json.dumps(result)), None
        except (TypeError, ValueError) as exc:
            message = f"Unable to marshal response: {exc}"
            return None, _error(TypeError(message), request_id, "Runtime.MarshalError")


class _InitError(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


InvokeListener = Callable[[LocalFunction, Any, Invocation], None]


class LocalFunctions:
    """The functions of the embedded AWS that have local source, found through boto3.

    ``sources`` maps function names to their source directories (see :func:`pipeline_sources`).
    Each invocation reads the function's configuration from the embedded AWS, so changes made
    there (``mlpipe apply``) take effect on the next invocation, in a fresh environment.
    ``on_invoke`` is told about every invocation (function, event, outcome).
    """

    def __init__(
        self,
        clients: ClientFactory,
        sources: Mapping[str, Path],
        *,
        endpoint_url: str,
        region: str,
        sagemaker_runtime_url: str | None = None,
        clock: Clock = time.monotonic,
        on_invoke: InvokeListener | None = None,
        metrics: MetricSink | None = None,
    ) -> None:
        self.clients = clients
        self.metrics = metrics
        self.sources = {name: Path(path) for name, path in sources.items()}
        self.runtime_env = runtime_environment(endpoint_url, region, sagemaker_runtime_url)
        self.clock = clock
        self.on_invoke = on_invoke
        self._loaded: dict[str, LocalFunction] = {}
        self._lock = threading.Lock()

    def configuration(self, name_or_arn: str) -> FunctionConfig:
        lam = self.clients("lambda")
        try:
            found = lam.get_function_configuration(FunctionName=name_or_arn)
        except lam.exceptions.ResourceNotFoundException as exc:
            raise FunctionNotFoundError(f"function not found: {name_or_arn}") from exc
        return FunctionConfig.from_lambda(found)

    def get(self, name_or_arn: str) -> LocalFunction:
        """The function, loaded again if its configuration changed since the last call."""
        config = self.configuration(name_or_arn)
        source = self.sources.get(config.name)
        if source is None:
            raise FunctionNotFoundError(
                f"no local source directory for function {config.name} "
                f"(known: {', '.join(sorted(self.sources)) or 'none'})"
            )
        with self._lock:
            current = self._loaded.get(config.name)
            if current is not None and current.config == config and current.source == source:
                return current
            if current is not None:
                current.unload()
            function = LocalFunction(config, source, self.runtime_env, clock=self.clock)
            self._loaded[config.name] = function
            return function

    def invoke(self, name_or_arn: str, event: Any) -> Invocation:
        function = self.get(name_or_arn)
        outcome = function.invoke(event)
        self._ship_logs(function)
        self._publish(function, outcome)
        if outcome.error is not None:
            log.warning(
                "%s failed: %s: %s",
                function.config.name,
                outcome.error.get("errorType"),
                outcome.error.get("errorMessage"),
            )
        if self.on_invoke is not None:
            self.on_invoke(function, event, outcome)
        return outcome

    def _publish(self, function: LocalFunction, outcome: Invocation) -> None:
        """Lambda's metrics for one invocation, per FunctionName. Local functions run one at
        a time and are never throttled: Throttles is 0, as Lambda reports it then."""
        if self.metrics is None:
            return
        put, dims = self.metrics.put, {"FunctionName": function.config.name}
        put("AWS/Lambda", "Invocations", 1, "Count", dims)
        put("AWS/Lambda", "Errors", int(outcome.error is not None), "Count", dims)
        put("AWS/Lambda", "Throttles", 0, "Count", dims)
        put("AWS/Lambda", "Duration", outcome.duration_ms, "Milliseconds", dims)

    def _ship_logs(self, function: LocalFunction) -> None:
        """The invocation's output to the function's log group, as Lambda writes it."""
        stream, lines = function.take_output()
        if not lines:
            return
        logs, group = self.clients("logs"), function.config.log_group
        now = int(time.time() * 1000)
        events = [{"timestamp": now, "message": line} for line in lines]
        try:
            try:
                logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)
            except logs.exceptions.ResourceNotFoundException:
                logs.create_log_stream(logGroupName=group, logStreamName=stream)
                logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)
        except Exception:  # logging must never fail an invocation
            log.warning(
                "could not write %s's logs to %s", function.config.name, group, exc_info=True
            )

    def close(self) -> None:
        with self._lock:
            for function in self._loaded.values():
                function.unload()
            self._loaded.clear()
