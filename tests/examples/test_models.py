"""The example models: reproducible SageMaker archives with measured, different accuracies."""

from __future__ import annotations

import ast
import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("sklearn", reason="the example models need the demo extra")


from mlpipe.examples import (
    HELDOUT_FILE,
    MANIFEST_FILE,
    ExampleModel,
    build_examples,
    inference,
    read_heldout,
)
from mlpipe.spec import Baseline

VERSIONS = ["v1.0.0", "v2.0.0"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, ExampleModel]]:
    out = tmp_path_factory.mktemp("examples")
    return out, {m.version: m for m in build_examples(out)}


@pytest.fixture(scope="module")
def examples(built: tuple[Path, dict[str, ExampleModel]]) -> dict[str, ExampleModel]:
    return built[1]


def estimator(example: ExampleModel) -> Any:
    with tarfile.open(example.path) as tar:
        member = tar.extractfile("model.json")
        assert member is not None
        return inference.LinearModel.from_json(member.read())


def test_both_versions_are_built(examples: dict[str, ExampleModel]):
    assert list(examples) == VERSIONS
    for version, example in examples.items():
        assert example.path.name == "model.tar.gz"
        assert example.path.parent.name == version
        assert example.sha256 == hashlib.sha256(example.path.read_bytes()).hexdigest()
        assert example.feature_count == 30
        assert example.latency_ms > 0


def test_the_committed_archives_are_the_ones_built(examples: dict[str, ExampleModel]):
    """`mlpipe models example` reproduces the archives config/pipeline.yaml serves."""
    root = Path(__file__).resolve().parents[2] / "examples"
    for version in VERSIONS:
        assert (root / version / "model.tar.gz").read_bytes() == examples[version].path.read_bytes()


def test_the_model_matches_the_scikit_learn_estimator_it_was_fitted_as(
    examples: dict[str, ExampleModel],
):
    """The NumPy computation of model.json answers as the fitted estimator does."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    from mlpipe.examples.models import TEST_SIZE
    from mlpipe.examples.models import VERSIONS as BUILDS

    data = load_breast_cancer()
    x_train, x_test, y_train, _ = train_test_split(
        data.data, data.target, test_size=TEST_SIZE, random_state=0, stratify=data.target
    )
    for version, (make, _) in BUILDS.items():
        fitted = make().fit(x_train, y_train)
        model = estimator(examples[version])
        assert model.predict(x_test).tolist() == fitted.predict(x_test).tolist()
        assert model.predict_proba(x_test)[:, 1] == pytest.approx(
            fitted.predict_proba(x_test)[:, 1], abs=1e-4
        )


def test_the_archives_are_reproducible(tmp_path: Path, examples: dict[str, ExampleModel]):
    again = {m.version: m for m in build_examples(tmp_path / "again")}
    for version in VERSIONS:
        assert again[version].sha256 == examples[version].sha256
        assert again[version].path.read_bytes() == examples[version].path.read_bytes()
        assert again[version].accuracy == examples[version].accuracy
    assert again["v1.0.0"].heldout.read_bytes() == examples["v1.0.0"].heldout.read_bytes()


def test_v2_is_measurably_more_accurate_than_v1(examples: dict[str, ExampleModel]):
    v1, v2 = examples["v1.0.0"].accuracy, examples["v2.0.0"].accuracy
    assert 0.5 < v1 < v2 <= 1.0
    assert v2 - v1 >= 0.03


def test_accuracy_is_measured_on_the_heldout_rows(examples: dict[str, ExampleModel]):
    rows, labels = read_heldout(examples["v1.0.0"].heldout)
    for example in examples.values():
        predicted = estimator(example).predict(rows).tolist()
        correct = sum(p == y for p, y in zip(predicted, labels, strict=True))
        assert example.accuracy == correct / len(labels)


def test_the_baseline_fits_the_spec(examples: dict[str, ExampleModel]):
    for example in examples.values():
        baseline = Baseline(**example.baseline)
        assert baseline.accuracy == pytest.approx(example.accuracy, abs=1e-4)
        assert baseline.latency == pytest.approx(example.latency_ms, abs=1e-3)


def test_the_heldout_rows_are_a_quarter_of_the_data_set(examples: dict[str, ExampleModel]):
    rows, labels = read_heldout(examples["v1.0.0"].heldout)
    assert len(rows) == 143  # 25% of 569, stratified
    assert {len(row) for row in rows} == {30}
    assert set(labels) == {0, 1}
    assert all(example.heldout == examples["v1.0.0"].heldout for example in examples.values())
    assert examples["v1.0.0"].heldout.name == HELDOUT_FILE


def test_the_archive_is_laid_out_as_sagemaker_expects(examples: dict[str, ExampleModel]):
    data = examples["v2.0.0"].path.read_bytes()
    assert data[4:8] == b"\0\0\0\0"  # gzip header mtime
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
        # Nothing to install under network isolation: no requirements.txt, no pickle.
        assert [m.name for m in members] == ["code", "code/inference.py", "model.json"]
        assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}
        assert [m.mode for m in members] == [0o755, 0o644, 0o644]
        script = tar.extractfile("code/inference.py")
        assert script is not None
        assert script.read() == Path(inference.__file__).read_bytes()


def test_the_inference_script_imports_only_what_the_sklearn_container_has():
    tree = ast.parse(Path(inference.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0
            imported.add((node.module or "").split(".")[0])
    # The image's Python is 3.9: its grammar, no zip(strict=...), no X | Y given to isinstance.
    ast.parse(Path(inference.__file__).read_text(), feature_version=(3, 9))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert not (node.func.id == "zip" and node.keywords)
            if node.func.id == "isinstance":
                assert not isinstance(node.args[1], ast.BinOp)
    # NumPy is in the scikit-learn image; the model does not depend on scikit-learn's version.
    assert imported <= set(sys.stdlib_module_names) | {"numpy"}
    assert "numpy" in imported


def test_the_manifest_lists_the_models(built: tuple[Path, dict[str, ExampleModel]]):
    out, examples = built
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["heldout"] == HELDOUT_FILE
    assert len(manifest["feature_names"]) == 30
    assert [
        (m["version"], m["path"], m["sha256"], m["accuracy"], m["baseline"])
        for m in manifest["models"]
    ] == [(v, f"{v}/model.tar.gz", e.sha256, e.accuracy, e.baseline) for v, e in examples.items()]


def test_the_handlers_speak_the_wire_format(examples: dict[str, ExampleModel], tmp_path: Path):
    model = estimator(examples["v2.0.0"])
    rows, _ = read_heldout(examples["v2.0.0"].heldout)
    data = inference.input_fn(json.dumps({"instances": rows[:3]}).encode(), "application/json")
    body, content_type = inference.output_fn(inference.predict_fn(data, model), "application/json")
    assert content_type == "application/json"
    predictions = json.loads(body)["predictions"]
    assert [p["label"] for p in predictions] == model.predict(rows[:3]).tolist()
    assert all(0.0 <= p["probability"] <= 1.0 for p in predictions)


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b'{"instances": [[1, 2]]}', "text/csv", 415),
        (b"not json", "application/json", 400),
        (b'{"instances": []}', "application/json", 400),
        (b'{"instances": [[1, "2"]]}', "application/json", 400),
        (b'{"instances": [[1, NaN]]}', "application/json", 400),
        (b'{"instances": [[1, 2], [3]]}', "application/json", 400),
    ],
)
def test_input_fn_refuses_bad_requests(body: bytes, content_type: str, status: int):
    with pytest.raises(inference.InferenceError) as caught:
        inference.input_fn(body, content_type)
    assert caught.value.status_code == status


def test_predict_fn_refuses_rows_of_the_wrong_width(examples: dict[str, ExampleModel]):
    model = estimator(examples["v1.0.0"])
    with pytest.raises(inference.InferenceError, match="30 features"):
        inference.predict_fn(inference.input_fn(b"[[1, 2, 3]]", "application/json"), model)


def test_output_fn_refuses_other_accept_types():
    with pytest.raises(inference.UnsupportedContentType):
        inference.output_fn([], "text/csv")
    assert inference.output_fn([], "*/*") == ('{"predictions":[]}', "application/json")


def test_the_faulty_version_fails_half_its_requests_with_500(tmp_path: Path):
    from mlpipe.examples.models import FAULTY_VERSION
    from mlpipe.local.runtime import ModelCodeError, load_model

    built = {m.version: m for m in build_examples(tmp_path / "out", fault="errors")}
    assert list(built) == [*VERSIONS, FAULTY_VERSION]
    faulty = built[FAULTY_VERSION]
    assert faulty.description.startswith("FAULTY (error_rate=0.5)")
    with tarfile.open(faulty.path) as tar:
        assert json.loads(tar.extractfile("fault.json").read()) == {"error_rate": 0.5}  # type: ignore[union-attr]
    model = load_model(faulty.path, tmp_path / "model")
    rows, _ = read_heldout(faulty.heldout)
    outcomes = []
    for row in rows[:6]:
        try:
            model.invoke(json.dumps({"instances": [row]}).encode(), "application/json")
            outcomes.append(200)
        except ModelCodeError as exc:
            outcomes.append(exc.status)
    assert outcomes == [200, 500, 200, 500, 200, 500]
    # the model under the fault is v2.0.0's, and measured without the fault
    assert faulty.accuracy == built["v2.0.0"].accuracy


def test_a_slow_fault_delays_every_answer(examples: dict[str, ExampleModel], tmp_path: Path):
    import time

    from mlpipe.local.runtime import load_model
    from mlpipe.resources import artifacts

    with tarfile.open(examples["v2.0.0"].path) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    files["fault.json"] = json.dumps({"delay_ms": 40}).encode()
    archive = tmp_path / "slow.tar.gz"
    archive.write_bytes(artifacts.archive(files))
    model = load_model(archive, tmp_path / "model")
    rows, _ = read_heldout(examples["v2.0.0"].heldout)
    body = json.dumps({"instances": [rows[0]]}).encode()
    for _ in range(2):  # every answer, and none fails
        started = time.perf_counter()
        answer, _ = model.invoke(body, "application/json")
        assert time.perf_counter() - started >= 0.04
        assert len(json.loads(answer)["predictions"]) == 1
