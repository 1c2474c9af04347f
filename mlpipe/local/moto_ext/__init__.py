"""Faithful extensions of moto for the AWS APIs mlpipe uses and moto 5.2 lacks.

Each extension is added to moto's backend and response classes, so it works the same under
``mock_aws`` and in moto's server: moto dispatches an action to the response method named after
it (``UpdateEndpoint`` -> ``update_endpoint``), and that method calls the backend.

One module per AWS service (:mod:`.sagemaker`, :mod:`.awslambda`, :mod:`.ec2`, :mod:`.iam`,
:mod:`.s3`, :mod:`.wafv2`, :mod:`.batch`, :mod:`.glue`, :mod:`.athena`, :mod:`.cloudwatch`,
:mod:`.kinesis`, :mod:`.apigateway`) and one for eventual consistency across services
(:mod:`.windows`). A module declares its changes to moto's classes with :func:`wrapper_of` and
:func:`new_method` (or makes them with :func:`_wrap` and :func:`_add`), and its ``install()``
makes them; each change is recorded so that :func:`uninstall_extensions` can undo it. The
fault-injection harness is :mod:`mlpipe.local.faults`. This module also has the embedded AWS
handle one request at a time.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from moto.core.botocore_stubber import BotocoreStubber
from moto.moto_server.werkzeug_app import DomainDispatcherApplication

__all__ = [
    "ENDPOINT_TRANSITION_SECONDS",
    "clock",
    "extensions_installed",
    "install_extensions",
    "seconds_from_env",
    "uninstall_extensions",
]


def seconds_from_env(variable: str, default: float) -> float:
    """A duration in seconds from the environment: ``default`` when unset or not a number."""
    raw = os.environ.get(variable, "")
    try:
        return max(0.0, float(raw)) if raw else default
    except ValueError:
        return default


ENDPOINT_TRANSITION_SECONDS: float = seconds_from_env("MLPIPE_LOCAL_ENDPOINT_DELAY", 1.0)
"""How long a SageMaker endpoint stays ``Creating``/``Updating``. Read at each request, so it can
be changed at any time; ``MLPIPE_LOCAL_ENDPOINT_DELAY`` sets it at import."""

clock: Callable[[], float] = time.monotonic
"""Time source, in seconds, for endpoint transitions; replace it to drive time in tests."""

_lock = threading.RLock()
_installed = False
_MISSING = object()
# (class, attribute, what it was before) for every change, so that it can be undone.
_changes: list[tuple[type, str, Any]] = []


def install_extensions() -> None:
    """Add the extensions to moto's classes. Safe to call any number of times."""
    global _installed
    with _lock:
        if _installed:
            return
        _install_serialized_requests()
        _install_modules()
        _installed = True


def _install_modules() -> None:
    """The extensions, one module per service, then the cross-service ones."""
    from mlpipe.local import faults
    from mlpipe.local.moto_ext import (
        apigateway,
        athena,
        autoscaling,
        awslambda,
        batch,
        cloudwatch,
        consistency,
        ec2,
        enis,
        glue,
        iam,
        kinesis,
        s3,
        sagemaker,
        wafv2,
        windows,
    )

    modules = (
        s3,
        sagemaker,
        glue,
        athena,
        cloudwatch,
        awslambda,
        kinesis,
        apigateway,
        batch,
        iam,
        ec2,
        wafv2,
        autoscaling,
        enis,
        windows,  # after the services: in front of their creates
        consistency,
        faults,  # last: in front of everything else
    )
    for module in modules:
        module.install()


def uninstall_extensions() -> None:
    """Give moto's classes back their own behaviour (for tests that need plain moto)."""
    global _installed
    from mlpipe.local.moto_ext import sagemaker

    with _lock:
        while _changes:
            cls, name, before = _changes.pop()
            if before is _MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, before)
        sagemaker.transitions.clear()
        _installed = False


def extensions_installed() -> bool:
    return _installed


# --- registration -------------------------------------------------------------------------------


def _add(cls: type, name: str, function: Callable[..., Any]) -> None:
    """Give ``cls`` a new method; on a response class this makes moto dispatch the action."""
    if name in vars(cls):
        raise RuntimeError(f"{cls.__name__}.{name} already exists; moto may now implement it")
    _changes.append((cls, name, _MISSING))
    setattr(cls, name, function)


def _wrap(cls: type, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    """Replace method ``name`` of ``cls`` by ``make(original)``."""
    original = getattr(cls, name)
    _changes.append((cls, name, vars(cls).get(name, _MISSING)))
    setattr(cls, name, functools.wraps(original)(make(original)))


_F = TypeVar("_F", bound=Callable[..., Any])
# Per extension module: the changes it declares, in order, for its install() to make.
_declared: dict[str, list[tuple[Callable[..., None], type, str, Callable[..., Any]]]] = {}


def _declare(change: Callable[..., None], cls: type, names: tuple[str, ...]) -> Callable[[_F], _F]:
    def declare(function: _F) -> _F:
        for name in names:
            _declared.setdefault(function.__module__, []).append((change, cls, name, function))
        return function

    return declare


def wrapper_of(cls: type, *names: str) -> Callable[[_F], _F]:
    """Declare ``make`` as what wraps methods ``names`` of ``cls`` (see :func:`_wrap`)."""
    return _declare(_wrap, cls, names)


def new_method(cls: type, name: str) -> Callable[[_F], _F]:
    """Declare a function as method ``name`` of ``cls``, which moto lacks (see :func:`_add`)."""
    return _declare(_add, cls, (name,))


def install_declared(module: str) -> None:
    """Make the changes the extension module ``module`` declares."""
    for change, cls, name, function in _declared.get(module, ()):
        change(cls, name, function)


# --- One request at a time ---------------------------------------------------------------------

# moto's backends are plain dicts and lists, not safe for concurrent requests (a parallel apply
# can fail with "dictionary changed size during iteration"). AWS answers each request
# consistently, so the emulator handles one request at a time.
_requests = threading.RLock()


def _serialized(original: Callable[..., Any]) -> Callable[..., Any]:
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        with _requests:
            return original(self, *args, **kwargs)

    return call


def _install_serialized_requests() -> None:
    _wrap(BotocoreStubber, "__call__", _serialized)  # mock_aws
    _wrap(DomainDispatcherApplication, "__call__", _serialized)  # moto's server
