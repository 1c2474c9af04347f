"""Model versions as assets of the spec: apply uploads each declared artifact by content, with
the pipeline key, registers the version, and only then creates its SageMaker Model."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from mlpipe.core.context import Context
from mlpipe.core.executor import execute
from mlpipe.core.plan import Action, plan_apply
from mlpipe.core.resource import Resource
from mlpipe.ops import registry
from mlpipe.resources.artifacts import content_key, pack
from mlpipe.resources.sagemaker import MODELS
from mlpipe.spec import Spec
from tests.conftest import ROOT, make_context
from tests.resources.endpoint_support import FakeTime, client, fake_time, resources
from tests.resources.serving import needed
from tests.support import four_step


def models(ctx: Context) -> list[Resource]:
    """The SageMaker Models and what they are made from: artifacts, their registration, the
    bucket, key, role and network they use (not the endpoint that serves them)."""
    pool = resources(ctx)
    return needed([r for r in pool if r.key == MODELS], pool)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch, ctx: Context) -> FakeTime:
    return fake_time(monkeypatch, ctx)


def with_versions(spec: Spec, **versions: dict) -> Spec:
    data = spec.model_dump()
    data["models"]["versions"] = {v.replace("_", "."): s for v, s in versions.items()}
    return Spec.model_validate(data)


def metadata(ctx: Context, version: str) -> dict:
    value = client("ssm").get_parameter(Name=ctx.names.metadata_param(version))["Parameter"]
    return json.loads(value["Value"])


def model_dir(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    (path / "code").mkdir(parents=True)
    (path / "model.json").write_text(json.dumps({"name": name}))
    (path / "code" / "inference.py").write_text("def model_fn(d):\n    return d\n")
    return path


def test_first_apply_uploads_registers_then_creates_models(ctx: Context, clock: FakeTime) -> None:
    four_step(ctx, models(ctx))
    key_arn = client("kms").describe_key(KeyId=ctx.names.kms_alias)["KeyMetadata"]["Arn"]
    for version in ("v1.0.0", "v2.0.0"):
        body = (ROOT / "examples" / version / "model.tar.gz").read_bytes()
        digest = hashlib.sha256(body).hexdigest()
        head = client("s3").head_object(Bucket=ctx.names.model_bucket, Key=content_key(digest))
        assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", key_arn)
        meta = metadata(ctx, version)
        assert meta["sha256"] == digest and meta["size"] == len(body)
        assert registry.is_registered(meta)
        model = client("sagemaker").describe_model(ModelName=ctx.names.model(version))
        assert model["PrimaryContainer"]["ModelDataUrl"] == meta["s3Path"]


def test_the_model_is_created_after_the_upload_and_the_registration(
    ctx: Context, clock: FakeTime
) -> None:
    execute(plan_apply(models(ctx)), parallelism=8)
    calls = ctx.aws.log.calls
    first_model = calls.index("sagemaker:CreateModel")
    uploads = [i for i, c in enumerate(calls) if c == "s3:PutObject"]
    assert len(uploads) == 2 and max(uploads) < first_model
    metadata_writes = [i for i, c in enumerate(calls) if c == "ssm:PutParameter"]
    assert sum(i < first_model for i in metadata_writes) >= 2


def on_clock(ctx: Context, spec: Spec) -> Context:
    """A new run of `spec` (its own call log) on `ctx`'s clock, the one moto's endpoints follow."""
    run = make_context(spec)
    run.clock = ctx.clock
    return run


def test_a_directory_is_packed_deterministically_and_uploaded_once(
    ctx: Context, clock: FakeTime, tmp_path: Path
) -> None:
    directory = model_dir(tmp_path, "v1")
    spec = with_versions(
        ctx.spec,
        v1_0_0={"artifact": str(directory)},
        v2_0_0={"artifact": "examples/v2.0.0/model.tar.gz"},
    )
    run = on_clock(ctx, spec)
    report = execute(plan_apply(models(run)))
    assert report.ok, {k: o.error for k, o in report.outcomes.items() if o.error}
    digest = hashlib.sha256(pack(directory)).hexdigest()
    assert metadata(run, "v1.0.0")["s3Path"].endswith(content_key(digest))
    # The same content declared for a new version is already there: nothing is uploaded.
    spec = with_versions(
        spec,
        v1_0_0={"artifact": str(directory)},
        v2_0_0={"artifact": "examples/v2.0.0/model.tar.gz"},
        v3_0_0={"artifact": str(directory)},
    )
    again = on_clock(ctx, spec)
    plan = plan_apply(models(again))
    assert {s.key: s.action for s in plan.steps}["artifact:v3.0.0"] is Action.NOOP
    assert execute(plan).ok
    assert again.aws.log.count("s3:PutObject") == 0
    assert metadata(again, "v3.0.0")["sha256"] == digest


def test_a_declared_seed_is_registered_once_the_artifact_is_named(
    ctx: Context, clock: FakeTime
) -> None:
    bare = with_versions(ctx.spec, v1_0_0={}, v2_0_0={"artifact": "examples/v2.0.0/model.tar.gz"})
    first = on_clock(ctx, bare)
    report = execute(plan_apply(models(first)))
    assert report.outcomes["sagemaker:models"].error.startswith("blocked: v1.0.0 has no artifact")
    assert not registry.is_registered(metadata(first, "v1.0.0"))
    second = on_clock(ctx, ctx.spec)
    plan = plan_apply(models(second))
    changes = {s.key: s.diff.paths() for s in plan.changes}
    assert changes["ssm:metadata-v1.0.0"] == ["Registered"]
    assert execute(plan).ok
    assert registry.is_registered(metadata(second, "v1.0.0"))
    assert client("sagemaker").describe_model(ModelName=second.names.model("v1.0.0"))
