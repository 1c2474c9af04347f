"""The example models: two versions of a classifier for scikit-learn's breast cancer data.

:func:`build_examples` trains both on one fixed split, packages each as SageMaker expects
(``model.tar.gz`` with ``model.json`` and ``code/inference.py``), and measures each packaged
model, through the same loading code the local runtime serves it with, on the held-out rows:
accuracy and median single-request latency, its performance baseline.

``model.json`` holds the fitted coefficients (rounded to :data:`SIGNIFICANT_DIGITS`), not a
pickle, and ``inference.py`` computes with NumPy: the archives load on the SageMaker
scikit-learn image (``sklearn:1.2-1``) whatever scikit-learn trained them, under network
isolation with no ``requirements.txt`` to install. They are byte-for-byte reproducible for a
seed (the rounding absorbs solver differences between scikit-learn versions).

Layout of ``out``::

    heldout.jsonl              one {"features": [30 floats], "label": 0|1} per held-out row
    manifest.json              the versions, their archives, sha256, accuracy, latency
    v1.0.0/model.tar.gz
    v2.0.0/model.tar.gz
    v3.0.0/model.tar.gz        with a fault (build_examples(fault=...)): v2.0.0's model that
                               fails a share of its requests, or answers slowly
"""

from __future__ import annotations

import hashlib
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from mlpipe.core.errors import MlpipeError
from mlpipe.examples import inference
from mlpipe.local.runtime import load_model
from mlpipe.resources import artifacts

__all__ = [
    "DATASET",
    "FAULTS",
    "FAULTY_VERSION",
    "HELDOUT_FILE",
    "MANIFEST_FILE",
    "ExampleModel",
    "build_examples",
    "read_heldout",
]

DATASET = "sklearn.datasets.load_breast_cancer"
HELDOUT_FILE = "heldout.jsonl"
MANIFEST_FILE = "manifest.json"
TEST_SIZE = 0.25
SIGNIFICANT_DIGITS = 6
# Features v1.0.0 sees: mean radius, mean texture, mean perimeter, mean area.
V1_FEATURES = (0, 1, 2, 3)
# Single-row requests timed for the latency baseline (the first held-out rows).
LATENCY_SAMPLES = 50


@dataclass(frozen=True)
class ExampleModel:
    """One packaged example model and its measured performance."""

    version: str
    path: Path
    sha256: str
    accuracy: float
    latency_ms: float
    feature_count: int
    heldout: Path
    description: str

    @property
    def baseline(self) -> dict[str, float]:
        """The performance baseline to register for this version (the spec's ``Baseline``)."""
        return {"accuracy": round(self.accuracy, 4), "latency": round(self.latency_ms, 3)}


def _require_sklearn() -> Any:
    try:
        import sklearn
    except ImportError as exc:
        raise MlpipeError(
            "The example models need scikit-learn: pip install 'mlpipe[demo]'."
        ) from exc
    return sklearn


def _v1_estimator() -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    select = ColumnTransformer([("size", StandardScaler(), list(V1_FEATURES))])
    return Pipeline([("select", select), ("classify", LogisticRegression(C=0.05))])


def _v2_estimator() -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline(
        [("scale", StandardScaler()), ("classify", LogisticRegression(C=1.0, max_iter=1000))]
    )


# version -> (how it is built, what it is)
VERSIONS: dict[str, tuple[Callable[[], Any], str]] = {
    "v1.0.0": (
        _v1_estimator,
        "logistic regression on 4 size features (mean radius, texture, perimeter, area), "
        "strongly regularised (C=0.05)",
    ),
    "v2.0.0": (_v2_estimator, "standardised logistic regression on all 30 features (C=1.0)"),
}


FAULTY_VERSION = "v3.0.0"
# What the faulty version does (its fault.json, read by inference.py).
FAULTS: dict[str, dict[str, float]] = {
    "errors": {"error_rate": 0.5},  # status 500 on every other request
    "slow": {"delay_ms": 2500},  # every answer 2.5 s late
}


def _inference_script() -> bytes:
    return (resources.files("mlpipe.examples") / "inference.py").read_bytes()


def _rounded(values: Any) -> list[float]:
    return [float(f"{float(v):.{SIGNIFICANT_DIGITS}g}") for v in values]


def _exported(estimator: Any, feature_count: int) -> bytes:
    """``model.json`` of a fitted pipeline: a standard scaler (alone or in a column selection)
    then a binary logistic regression (see ``inference.py``)."""
    first, classify = estimator.steps[0][1], estimator.steps[-1][1]
    if hasattr(first, "named_transformers_"):
        scaler, columns = first.transformers_[0][1], list(first.transformers_[0][2])
    else:
        scaler, columns = first, list(range(feature_count))
    params = {
        "format": inference.FORMAT,
        "n_features": feature_count,
        "features": [int(c) for c in columns],
        "mean": _rounded(scaler.mean_),
        "scale": _rounded(scaler.scale_),
        "coef": _rounded(classify.coef_[0]),
        "intercept": _rounded(classify.intercept_)[0],
        "classes": [int(c) for c in classify.classes_],
    }
    return (json.dumps(params, separators=(",", ":")) + "\n").encode()


def _measure(archive: Path, rows: list[list[float]], labels: list[int]) -> tuple[float, float]:
    """Accuracy on all rows and median single-row latency (ms) over the first
    :data:`LATENCY_SAMPLES` rows, of the packaged model as it is served."""
    with tempfile.TemporaryDirectory(prefix="mlpipe-example-") as directory:
        model = load_model(archive, Path(directory))
        body = json.dumps({"instances": rows}).encode()
        answer, _ = model.invoke(body, "application/json", "application/json")
        predictions = json.loads(answer)["predictions"]
        correct = sum(p["label"] == y for p, y in zip(predictions, labels, strict=True))
        timings = []
        for row in rows[:LATENCY_SAMPLES]:
            request = json.dumps({"instances": [row]}).encode()
            started = time.perf_counter()
            model.invoke(request, "application/json", "application/json")
            timings.append((time.perf_counter() - started) * 1000)
    return correct / len(labels), statistics.median(timings)


def _write_heldout(path: Path, rows: list[list[float]], labels: list[int]) -> None:
    lines = [
        json.dumps({"features": row, "label": label}, separators=(",", ":"))
        for row, label in zip(rows, labels, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_heldout(path: Path) -> tuple[list[list[float]], list[int]]:
    """The held-out rows and labels written by :func:`build_examples`."""
    rows, labels = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            rows.append([float(x) for x in record["features"]])
            labels.append(int(record["label"]))
    return rows, labels


def build_examples(out: Path, seed: int = 0, fault: str | None = None) -> list[ExampleModel]:
    """Train, package and measure the example models into ``out``; returns them by version.

    ``seed`` fixes the train/test split; the same seed gives the same archive bytes. With a
    ``fault`` (a key of :data:`FAULTS`), a third version,
    :data:`FAULTY_VERSION`, is v2.0.0's model with that fault; its accuracy and latency are
    measured without the fault.
    """
    if fault is not None and fault not in FAULTS:
        raise MlpipeError(f"unknown fault {fault!r}: one of {', '.join(FAULTS)}")
    _require_sklearn()
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    data = load_breast_cancer()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=TEST_SIZE, random_state=seed, stratify=data.target
    )
    out.mkdir(parents=True, exist_ok=True)
    rows = [[float(v) for v in row] for row in x_test]
    labels = [int(y) for y in y_test]
    heldout = out / HELDOUT_FILE
    _write_heldout(heldout, rows, labels)

    code = {"code/inference.py": _inference_script()}
    models = []
    builds = [(version, make, text, None) for version, (make, text) in VERSIONS.items()]
    if fault is not None:
        make, description = VERSIONS["v2.0.0"]
        what = ", ".join(f"{k}={v:g}" for k, v in FAULTS[fault].items())
        builds.append((FAULTY_VERSION, make, f"FAULTY ({what}): {description}", FAULTS[fault]))
    for version, make, description, faults in builds:
        estimator = make().fit(x_train, y_train)
        files = {**code, "model.json": _exported(estimator, int(data.data.shape[1]))}
        path = out / version / "model.tar.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(artifacts.archive(files))
        accuracy, latency_ms = _measure(path, rows, labels)
        if faults is not None:
            files["fault.json"] = json.dumps(faults, sort_keys=True).encode()
        archive = artifacts.archive(files)
        path.write_bytes(archive)
        models.append(
            ExampleModel(
                version=version,
                path=path,
                sha256=hashlib.sha256(archive).hexdigest(),
                accuracy=accuracy,
                latency_ms=latency_ms,
                feature_count=int(data.data.shape[1]),
                heldout=heldout,
                description=description,
            )
        )
    _write_manifest(out, seed, [str(n) for n in data.feature_names], models)
    return models


def _write_manifest(
    out: Path, seed: int, feature_names: list[str], models: list[ExampleModel]
) -> None:
    manifest = {
        "dataset": DATASET,
        "seed": seed,
        "test_size": TEST_SIZE,
        "heldout": HELDOUT_FILE,
        "feature_names": feature_names,
        "models": [
            {
                "version": m.version,
                "path": m.path.relative_to(out).as_posix(),
                "sha256": m.sha256,
                "accuracy": m.accuracy,
                "latency_ms": m.latency_ms,
                "feature_count": m.feature_count,
                "description": m.description,
                "baseline": m.baseline,
            }
            for m in models
        ],
    }
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
