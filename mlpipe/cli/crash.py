"""The last resort for an error mlpipe did not foresee: its full trace goes to a file."""

from __future__ import annotations

import os
import tempfile
import time
import traceback
from pathlib import Path


def write_trace(exc: BaseException) -> str:
    """Write the traceback of `exc` under $MLPIPE_HOME/errors (default ~/.mlpipe/errors), else
    the temporary directory; say where."""
    text = "".join(traceback.format_exception(exc))
    home = os.environ.get("MLPIPE_HOME")
    bases = [Path(home).expanduser() if home else Path.home() / ".mlpipe"]
    bases.append(Path(tempfile.gettempdir()) / "mlpipe")
    name = f"error-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.txt"
    for base in bases:
        path = base / "errors" / name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError:
            continue
        return f"full trace in {path}"
    return "the full trace could not be written"
