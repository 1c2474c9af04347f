"""SageMaker's model code contract, as its scikit-learn container runs it: a ``model.tar.gz``
with ``code/inference.py`` extracted into a directory of its own, the script loaded as a fresh
module, ``model_fn(model_dir)`` called, and requests run through ``input_fn``, ``predict_fn`` and
``output_fn`` (or ``transform_fn``), with the container's defaults for those the script does
not define. Used by the local SageMaker runtime (:mod:`mlpipe.local.runtime`).
"""

from __future__ import annotations

import csv
import importlib.util
import io
import itertools
import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any

__all__ = ["LoadedModel", "ModelCodeError", "load_model"]

JSON = "application/json"
CSV = "text/csv"
NPY = "application/x-npy"


class ModelCodeError(Exception):
    """The model code failed; ``status`` is what its container would have answered."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _status_of(exc: BaseException) -> int:
    """The HTTP status a serving container answers for an exception from the model code: the
    exception's own ``status_code`` when it has one in 400-599, else 500."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and 400 <= status <= 599:
        return status
    return 500


# --- the model code -----------------------------------------------------------------------------


def _media_type(value: str | None, default: str) -> str:
    media = (value or "").split(";", 1)[0].strip().lower()
    return default if media in ("", "*/*") else media


def _default_model_fn(model_dir: str) -> Any:
    raise NotImplementedError("inference.py does not define model_fn(model_dir)")


def _default_input_fn(body: bytes, content_type: str) -> Any:
    """SageMaker's scikit-learn container: JSON, CSV or NPY into a NumPy array."""
    import numpy as np

    media = _media_type(content_type, JSON)
    if media == JSON:
        return np.array(json.loads(body))
    if media == CSV:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        rows = [row for row in csv.reader(io.StringIO(text)) if row]
        return np.array(rows, dtype=np.float64)
    if media == NPY:
        return np.load(io.BytesIO(body), allow_pickle=False)
    raise ModelCodeError(415, f"Content type {content_type} is not supported by this framework.")


def _default_predict_fn(data: Any, model: Any) -> Any:
    return model.predict(data)


def _default_output_fn(prediction: Any, accept: str) -> tuple[bytes, str]:
    import numpy as np

    media = _media_type(accept, JSON)
    array = np.asarray(prediction)
    if media == JSON:
        return json.dumps(array.tolist()).encode(), JSON
    if media == CSV:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerows(array.reshape(len(array), -1).tolist() if array.ndim else [[array]])
        return out.getvalue().encode(), CSV
    if media == NPY:
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        return buffer.getvalue(), NPY
    raise ModelCodeError(415, f"Accept type {accept} is not supported by this framework.")


_module_numbers = itertools.count(1)


def _load_module(path: Path) -> ModuleType:
    """``inference.py`` as a fresh module: models never share module state."""
    name = f"mlpipe_local_model_{next(_module_numbers)}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModelCodeError(500, f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _extract(archive: Path, directory: Path) -> None:
    """Extract a model archive, refusing members that would land outside ``directory``."""
    with tarfile.open(archive, "r:*") as tar:
        members = tar.getmembers()
        for member in members:
            path = PurePosixPath(member.name)
            if path.is_absolute() or ".." in path.parts:
                raise ModelCodeError(500, f"model archive member outside the archive: {path}")
            if not (member.isfile() or member.isdir()):
                raise ModelCodeError(500, f"model archive member is not a file: {path}")
        if hasattr(tarfile, "data_filter"):
            tar.extractall(directory, members=members, filter="data")
        else:  # pragma: no cover - Python < 3.11.4; members were checked above
            tar.extractall(directory, members=members)


@dataclass
class LoadedModel:
    """A model archive loaded as SageMaker loads it: ``model_fn`` run on the extracted archive,
    and the request handlers of ``code/inference.py`` (or SageMaker's defaults)."""

    model_dir: Path
    module: ModuleType
    model: Any

    def _handler(self, name: str, default: Callable[..., Any]) -> Callable[..., Any]:
        handler = getattr(self.module, name, None)
        return handler if callable(handler) else default

    def invoke(
        self, body: bytes, content_type: str | None = None, accept: str | None = None
    ) -> tuple[bytes, str]:
        """Run one request through the handlers; returns the response body and content type.

        Raises :class:`ModelCodeError` with the status the container would answer when the
        model code raises.
        """
        content_type = content_type or JSON
        accept = JSON if accept in (None, "", "*/*") else accept
        try:
            transform = getattr(self.module, "transform_fn", None)
            if callable(transform):
                result = transform(self.model, body, content_type, accept)
            else:
                data = self._handler("input_fn", _default_input_fn)(body, content_type)
                prediction = self._handler("predict_fn", _default_predict_fn)(data, self.model)
                result = self._handler("output_fn", _default_output_fn)(prediction, accept)
        except ModelCodeError:
            raise
        except Exception as exc:
            raise ModelCodeError(_status_of(exc), f"{type(exc).__name__}: {exc}") from exc
        payload, response_type = result if isinstance(result, tuple) else (result, accept)
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        return bytes(payload), str(response_type)


def load_model(archive: Path, directory: Path) -> LoadedModel:
    """Extract ``archive`` (a SageMaker ``model.tar.gz``) into ``directory`` and load it.

    Raises :class:`ModelCodeError` when the archive has no ``code/inference.py`` or its code fails
    to load.
    """
    directory.mkdir(parents=True, exist_ok=True)
    try:
        _extract(archive, directory)
    except (tarfile.TarError, OSError) as exc:
        raise ModelCodeError(500, f"cannot extract the model archive: {exc}") from exc
    script = directory / "code" / "inference.py"
    if not script.is_file():
        raise ModelCodeError(500, "the model archive has no code/inference.py")
    try:
        module = _load_module(script)
        model_fn = getattr(module, "model_fn", None)
        model = (model_fn if callable(model_fn) else _default_model_fn)(str(directory))
    except ModelCodeError:
        raise
    except Exception as exc:
        raise ModelCodeError(500, f"loading the model failed: {type(exc).__name__}: {exc}") from exc
    return LoadedModel(directory, module, model)
