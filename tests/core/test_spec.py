from pathlib import Path

import botocore.session
import pytest
import yaml

from mlpipe.core.errors import ExitStatus, SpecError
from mlpipe.spec import Names, check_instance_type, check_schedule, check_version, load_spec
from tests.conftest import SPEC_PATH


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def base() -> dict:
    return yaml.safe_load(SPEC_PATH.read_text())


def errors_of(tmp_path: Path, data: dict) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_spec(write(tmp_path, data))
    assert caught.value.exit_status == ExitStatus.USAGE
    return caught.value.lines


def test_shipped_spec_describes_the_whole_pipeline() -> None:
    spec = load_spec(SPEC_PATH)
    assert [(v.name, v.weight) for v in spec.endpoint.variants] == [("ModelA", 80), ("ModelB", 20)]
    assert spec.stream.shards == 2 and spec.api.cache.ttl_seconds == 300
    assert spec.schedule.batch_cron == "cron(0 2 * * ? *)"
    assert spec.autoscaling.target_invocations_per_instance == 1000
    assert {"ssm", "kinesis-streams", "logs", "xray"} <= set(spec.network.interface_endpoints)


def test_weights_must_add_up_to_100(tmp_path: Path) -> None:
    data = base()
    data["endpoint"]["variants"][1]["weight"] = 30
    path = write(tmp_path, data)
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert caught.value.lines == [f"{path}: endpoint.variants: weights must add up to 100, got 110"]


def test_unknown_keys_are_refused_with_their_path(tmp_path: Path) -> None:
    data = base()
    data["storage"]["model_bucket"]["versionning"] = True
    data["extra_section"] = {}
    lines = errors_of(tmp_path, data)
    assert any("storage.model_bucket.versionning: unknown key" in line for line in lines)
    assert any("extra_section: unknown key" in line for line in lines)


def test_list_positions_are_shown(tmp_path: Path) -> None:
    data = base()
    data["endpoint"]["variants"][1]["version"] = "2.0"
    lines = errors_of(tmp_path, data)
    assert any(
        "endpoint.variants[1].version: '2.0' is not a version like v1.2.3" in x for x in lines
    )


def test_variant_must_serve_a_declared_version(tmp_path: Path) -> None:
    data = base()
    data["endpoint"]["variants"][1]["version"] = "v9.9.9"
    (line,) = errors_of(tmp_path, data)
    assert "endpoint.variants: ModelB serves v9.9.9" in line


def test_names_respect_service_limits(tmp_path: Path) -> None:
    data = base()
    data["pipeline"] = "a-very-long-pipeline-name"  # 25 chars, allowed by the pattern? no: 24 max
    lines = errors_of(tmp_path, data)
    assert any(line.split(": ")[1] == "pipeline" for line in lines)
    data["pipeline"] = "pipeline-name-of-24-chrs"
    data["environment"] = "production"
    lines = errors_of(tmp_path, data)
    assert any("S3 bucket name" in line and "over AWS's limit of 63" in line for line in lines)


def test_names_derive_from_pipeline_and_environment() -> None:
    names = Names("ml-pipeline", "prod", "123456789012", "us-east-1")
    assert names.model_bucket == "ml-pipeline-prod-models-123456789012-us-east-1"
    assert names.active_version_param == "/ml-pipeline/prod/models/active-version"
    assert names.metadata_param("v2.0.0") == "/ml-pipeline/prod/models/versions/v2.0.0/metadata"
    assert names.model("v2.0.0") == "ml-pipeline-prod-model-v2-0-0"
    assert names.endpoint_config("a") != names.endpoint_config("b")
    assert names.glue_database == "ml_pipeline_prod"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pipeline: [unclosed", "not valid YAML"),
        ("- a\n- b\n", "the spec must be a mapping"),
    ],
)
def test_malformed_files(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert expected in caught.value.lines[0]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        load_spec(tmp_path / "nope.yaml")
    assert "file not found" in caught.value.lines[0]


def test_reserved_tag_prefixes(tmp_path: Path) -> None:
    data = base()
    data["tags"]["mlpipe:pipeline"] = "x"
    (line,) = errors_of(tmp_path, data)
    assert "tags: tag key 'mlpipe:pipeline' uses a reserved prefix" in line


def test_every_sagemaker_hosting_instance_type_is_accepted() -> None:
    model = botocore.session.get_session().get_service_model("sagemaker")
    types = model.shape_for("ProductionVariantInstanceType").enum
    assert len(types) > 100
    assert [t for t in types if check_instance_type(t) != t] == []


@pytest.mark.parametrize(
    "expression",
    [
        # The examples of EventBridge's schedule expression reference.
        "cron(0 10 * * ? *)",
        "cron(15 12 * * ? *)",
        "cron(0 18 ? * MON-FRI *)",
        "cron(0 8 1 * ? *)",
        "cron(0/15 * * * ? *)",
        "cron(0/10 * ? * MON-FRI *)",
        "cron(0/5 8-17 ? * MON-FRI *)",
        "cron(0 9 ? * 2#1 *)",
        "cron(0 0 L * ? *)",
        "cron(0 0 ? * 6L *)",
        "cron(0 0 15W * ? *)",
        "cron(30 4 ? JAN-MAR SUN,SAT 2027-2030)",
        "rate(1 minute)",
        "rate(5 minutes)",
        "rate(1 hour)",
        "rate(12 hours)",
        "rate(1 day)",
        "rate(7 days)",
    ],
)
def test_eventbridge_schedule_expressions_are_accepted(expression: str) -> None:
    assert check_schedule(expression) == expression


@pytest.mark.parametrize(
    "version", ["v1.0.0", "v10.20.30", "v1.0.0-rc.1", "v1.0.0-alpha-1.x", "v0.0.0-0a"]
)
def test_semantic_versions_with_a_v_are_accepted(version: str) -> None:
    assert check_version(version) == version


@pytest.mark.parametrize(
    "version", ["v1.0.0\n", "v1.0", "V1.0.0", "v1.0.0-01", "v1.0.0-", "v1.0.0-a..b", " v1.0.0"]
)
def test_anything_else_is_not_a_version(version: str) -> None:
    with pytest.raises(ValueError, match="is not a version"):
        check_version(version)


def test_a_merge_key_may_be_overridden_without_counting_as_a_duplicate(tmp_path: Path) -> None:
    text = SPEC_PATH.read_text().replace(
        "  preprocess: {memory_mb: 512, timeout_seconds: 30, reserved_concurrency: 50}",
        "  preprocess: &fn {memory_mb: 512, timeout_seconds: 30, reserved_concurrency: 50}\n"
        "  stream_processor: {<<: *fn, timeout_seconds: 60}",
    )
    text = text.replace(
        "  stream_processor: {memory_mb: 512, timeout_seconds: 60, reserved_concurrency: 10}\n", ""
    )
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    spec = load_spec(path)
    assert spec.lambdas.stream_processor.timeout_seconds == 60
    assert spec.lambdas.stream_processor.reserved_concurrency == 50
