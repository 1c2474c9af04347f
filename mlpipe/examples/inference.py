"""SageMaker inference handlers for mlpipe's example models (scikit-learn, breast cancer data).

This file is shipped as ``code/inference.py`` inside each example ``model.tar.gz``. It imports
only the standard library and NumPy, and the model is ``model.json`` (the fitted standardisation
and logistic-regression coefficients), not a pickle: nothing depends on the scikit-learn version
that trained it, so SageMaker's scikit-learn serving container (``sklearn:1.2-1``) loads it under
network isolation with nothing to install, and so does mlpipe's local runtime. It runs on the
image's Python 3.9 (no runtime ``X | Y`` types, no ``zip(strict=...)``).

Model
-----
``model.json``: ``{"format": "mlpipe-linear/1", "features": [column indices], "mean": [...],
"scale": [...], "coef": [...], "intercept": b, "classes": [0, 1]}``. The decision of a row ``x``
is ``z = sum(coef * (x[features] - mean) / scale) + b``; the probability of ``classes[1]`` is
``1 / (1 + exp(-z))`` and the label ``classes[1]`` when ``z > 0`` (scikit-learn's binary
``LogisticRegression``).

Wire format
-----------
Request: ``Content-Type: application/json``, body ``{"instances": [[f1, ..., f30], ...]}``: one
row of the 30 features of scikit-learn's breast cancer data set per instance, in the data set's
column order. A bare list of rows (``[[f1, ..., f30], ...]``) is accepted too.

Response: ``Content-Type: application/json``, body ``{"predictions": [...]}`` with one object per
instance, in order: ``{"label": 0 | 1, "probability": p}``. ``label`` is the predicted class
(the data set's target: 0 = malignant, 1 = benign) and ``probability`` the model's probability
of class 1, a float in [0, 1].

Errors: a body that is not JSON, rows of the wrong width or values that are not finite numbers
are refused with status 400; a content type or accept type other than JSON with 415.

Faults: an archive with a ``fault.json`` beside ``model.json`` misbehaves on purpose, to test
what watches the endpoint: ``{"delay_ms": 2500}`` answers every request that much later, and
``{"error_rate": 0.5}`` fails that share of the requests (evenly spread) with status 500.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
from typing import Any

import numpy as np

MODEL_FILE = "model.json"
FORMAT = "mlpipe-linear/1"
FAULT_FILE = "fault.json"
JSON = "application/json"

# The archive's fault, if it has one (model_fn reads it), and the requests counted for it.
_fault: dict[str, float] = {}
_requests = itertools.count(1)


class InferenceError(ValueError):
    """A request the model cannot answer; ``status_code`` is the HTTP status to return."""

    status_code = 400


class UnsupportedContentType(InferenceError):
    status_code = 415


class InjectedFault(RuntimeError):
    """A failure the archive's ``fault.json`` asks for."""

    status_code = 500


class LinearModel:
    """A standardised binary logistic regression, computed with NumPy."""

    def __init__(self, params: dict[str, Any]) -> None:
        if params.get("format") != FORMAT:
            raise ValueError(f"{MODEL_FILE}: format {params.get('format')!r}, expected {FORMAT}")
        self.features = np.asarray(params["features"], dtype=np.intp)
        self.mean = np.asarray(params["mean"], dtype=np.float64)
        self.scale = np.asarray(params["scale"], dtype=np.float64)
        self.coef = np.asarray(params["coef"], dtype=np.float64)
        self.intercept = float(params["intercept"])
        self.classes_ = np.asarray(params["classes"])
        self.n_features_in_ = int(params["n_features"])

    @classmethod
    def from_json(cls, data: bytes | str) -> LinearModel:
        return cls(json.loads(data))

    def decision_function(self, rows: Any) -> np.ndarray:
        x = np.asarray(rows, dtype=np.float64)[:, self.features]
        return ((x - self.mean) / self.scale) @ self.coef + self.intercept

    def predict(self, rows: Any) -> np.ndarray:
        return self.classes_[(self.decision_function(rows) > 0).astype(np.intp)]

    def predict_proba(self, rows: Any) -> np.ndarray:
        positive = 1.0 / (1.0 + np.exp(-self.decision_function(rows)))
        return np.column_stack([1.0 - positive, positive])


def model_fn(model_dir: str) -> LinearModel:
    """Load the model's coefficients from the extracted model archive."""
    fault_path = os.path.join(model_dir, FAULT_FILE)
    if os.path.exists(fault_path):
        with open(fault_path, encoding="utf-8") as f:
            _fault.update({k: float(v) for k, v in json.load(f).items()})
    with open(os.path.join(model_dir, MODEL_FILE), encoding="utf-8") as f:
        return LinearModel.from_json(f.read())


def _misbehave() -> None:
    """What ``fault.json`` asks for: a delay, and an error on a share of the requests."""
    if not _fault:
        return
    if _fault.get("delay_ms"):
        time.sleep(_fault["delay_ms"] / 1000)
    rate, n = _fault.get("error_rate", 0.0), next(_requests)
    if math.floor(n * rate) != math.floor((n - 1) * rate):
        raise InjectedFault(f"injected fault: request {n} fails (error rate {rate:g})")


def _is_json(media_type: str | None) -> bool:
    return (media_type or JSON).split(";", 1)[0].strip().lower() == JSON


def input_fn(request_body: bytes | str, request_content_type: str | None) -> np.ndarray:
    """Decode ``{"instances": [[...], ...]}`` into a 2-D float array."""
    if not _is_json(request_content_type):
        raise UnsupportedContentType(f"unsupported content type: {request_content_type!r}")
    if isinstance(request_body, (bytes, bytearray)):
        request_body = bytes(request_body).decode("utf-8")
    try:
        payload = json.loads(request_body)
    except ValueError as exc:
        raise InferenceError(f"request body is not JSON: {exc}") from exc
    rows = payload.get("instances") if isinstance(payload, dict) else payload
    if not isinstance(rows, list) or not rows or not all(isinstance(r, list) for r in rows):
        raise InferenceError('expected {"instances": [[f1, ..., fN], ...]} with at least one row')
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InferenceError(f"instances[{i}][{j}] is not a number")
            if not math.isfinite(value):
                raise InferenceError(f"instances[{i}][{j}] is not finite")
    widths = {len(row) for row in rows}
    if len(widths) != 1:
        raise InferenceError("all instances must have the same number of features")
    return np.asarray(rows, dtype=np.float64)


def predict_fn(input_data: np.ndarray, model: Any) -> list[dict[str, Any]]:
    """Predict the class and the probability of class 1 for each row."""
    _misbehave()
    expected = getattr(model, "n_features_in_", None)
    if expected is not None and input_data.shape[1] != expected:
        raise InferenceError(f"each instance needs {expected} features, got {input_data.shape[1]}")
    labels = model.predict(input_data)
    positive = list(model.classes_).index(1)
    probabilities = model.predict_proba(input_data)[:, positive]
    return [
        {"label": int(labels[i]), "probability": float(probabilities[i])}
        for i in range(len(labels))
    ]


def output_fn(prediction: list[dict[str, Any]], accept: str | None) -> tuple[str, str]:
    """Encode the predictions as ``{"predictions": [...]}``."""
    media_types = [m.split(";", 1)[0].strip().lower() for m in (accept or JSON).split(",")]
    if not any(m in (JSON, "*/*", "application/*", "") for m in media_types):
        raise UnsupportedContentType(f"unsupported accept type: {accept!r}")
    return json.dumps({"predictions": prediction}, separators=(",", ":")), JSON
