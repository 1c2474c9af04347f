"""The embedded AWS: moto's server, extended where moto lacks an API mlpipe needs.

Names load on first use, so ``python -m mlpipe.local.server`` does not run its module twice.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlpipe.local.moto_ext import install_extensions
    from mlpipe.local.runtime import LocalRuntime
    from mlpipe.local.server import (
        DEFAULT_HOST,
        DEFAULT_PORT,
        LocalAws,
        LocalAwsError,
        PortInUseError,
        ServerAlreadyRunningError,
        ServerInfo,
        ServerStartError,
        detached_status,
        serve,
        start_detached,
        state_dir,
        stop_detached,
    )

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "LocalAws",
    "LocalAwsError",
    "LocalRuntime",
    "PortInUseError",
    "ServerAlreadyRunningError",
    "ServerInfo",
    "ServerStartError",
    "detached_status",
    "install_extensions",
    "serve",
    "start_detached",
    "state_dir",
    "stop_detached",
]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = {"install_extensions": "moto_ext", "LocalRuntime": "runtime"}.get(name, "server")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
