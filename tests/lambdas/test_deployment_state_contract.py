"""The deployment state's contract: what mlpipe writes to Parameter Store, every reader (both
Lambda handlers and the batch job) reads as the same variants, versions and weights."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import boto3
import pytest
from inference_common import Deployment, DeploymentStateError, VariantState, parse_deployment

from batch_job.scoring import ScoringError, load_version_map
from lambdas.preprocess import handler as preprocess
from lambdas.stream_processor import handler as stream_processor
from mlpipe.core.context import Context
from mlpipe.ops.deployments import Runner, _split, changed, parse_weights
from mlpipe.resources.sagemaker import DeploymentState, save_state

HANDLERS = (preprocess, stream_processor)


def _states(ctx: Context) -> dict[str, DeploymentState]:
    """The states the model operations write, built as they build them."""
    runner = Runner(ctx)
    initial = DeploymentState.from_spec(ctx)
    champion, challenger = initial.champion, initial.challenger or ""
    traffic = changed(
        initial,
        runner.record("traffic", "50/50"),
        weights=parse_weights(initial, {champion: 50, challenger: 50}),
    )
    staged = changed(
        traffic,
        runner.record("promote", "deploy v3.0.0", to="v3.0.0"),
        serve=(challenger, "v3.0.0"),
        weights=_split(traffic, challenger, 0),
    )
    canary = changed(
        staged,
        runner.record("promote", "10% to the challenger", to="v3.0.0"),
        weights=_split(staged, challenger, 10),
    )
    promoted = changed(
        canary,
        runner.record("promote", "100% to the challenger", to="v3.0.0"),
        weights=_split(canary, challenger, 100),
        champion=challenger,
    )
    rollback = changed(
        promoted,
        runner.record("rollback", "back", to="v1.0.0"),
        weights=_split(promoted, champion, 100),
        champion=champion,
    )
    return {
        "initial": initial,
        "traffic": traffic,
        "canary": canary,
        "promoted": promoted,
        "rollback": rollback,
    }


def _expected(state: DeploymentState) -> Deployment:
    variants = tuple(VariantState(v.name, v.version, v.weight) for v in state.variants)
    return Deployment(variants, state.champion, state.challenger)


@pytest.fixture
def readers_env(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> Iterator[Context]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", ctx.aws.region)
    monkeypatch.setenv("ACTIVE_VERSION_PARAM", ctx.names.active_version_param)
    monkeypatch.setenv("DEPLOYMENT_PARAM", ctx.names.deployment_param)
    ctx.aws.client("ssm").put_parameter(
        Name=ctx.names.active_version_param, Value="v1.0.0", Type="String"
    )
    yield ctx
    for module in HANDLERS:
        module._runtime.clear()


def _handler_reads(module: ModuleType) -> tuple[str, Deployment]:
    module._runtime.clear()
    active, deployment = module._runtime.params.get()
    return active, deployment


def test_the_states_cover_what_the_operations_change(ctx: Context) -> None:
    states = _states(ctx)
    weights = {name: tuple(v.weight for v in s.variants) for name, s in states.items()}
    assert weights == {
        "initial": (80, 20),
        "traffic": (50, 50),
        "canary": (90, 10),
        "promoted": (0, 100),
        "rollback": (100, 0),
    }
    assert states["canary"].variants[1].version == "v3.0.0"
    assert states["promoted"].champion == states["initial"].challenger
    assert states["rollback"].operation and states["rollback"].operation["kind"] == "rollback"


@pytest.mark.parametrize("name", ["initial", "traffic", "canary", "promoted", "rollback"])
def test_every_reader_reads_what_mlpipe_writes(readers_env: Context, name: str) -> None:
    ctx = readers_env
    state = _states(ctx)[name]
    save_state(ctx, state)
    expected = _expected(state)

    for module in HANDLERS:
        assert _handler_reads(module) == ("v1.0.0", expected), module.__name__
    versions = load_version_map(
        boto3.client("ssm"), ctx.names.active_version_param, ctx.names.deployment_param
    )
    assert (versions.active_version, versions.deployment) == ("v1.0.0", expected)
    for variant in state.variants:
        assert versions.resolve(variant.name) == variant.version


def test_a_renamed_field_is_refused_by_every_reader(readers_env: Context) -> None:
    ctx = readers_env
    text = DeploymentState.from_spec(ctx).to_json().replace('"weight"', '"percent"')
    ctx.aws.client("ssm").put_parameter(
        Name=ctx.names.deployment_param, Value=text, Type="String", Overwrite=True
    )
    for module in HANDLERS:
        with pytest.raises(RuntimeError, match=r"variants\[0\]\.weight"):
            _handler_reads(module)
    with pytest.raises(ScoringError, match=r"malformed: variants\[0\]\.weight"):
        load_version_map(
            boto3.client("ssm"), ctx.names.active_version_param, ctx.names.deployment_param
        )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{", "not JSON"),
        ('{"variants": {}}', "no 'variants' list"),
        ('{"variants": ["A"], "champion": "A"}', r"variants\[0\] must be an object"),
        (
            '{"variants": [{"name": "A", "version": "v1", "weight": 101}], "champion": "A"}',
            r"variants\[0\]\.weight",
        ),
        (
            '{"variants": [{"name": "A", "version": "v1", "weight": true}], "champion": "A"}',
            r"variants\[0\]\.weight",
        ),
        ('{"variants": [{"name": "A", "weight": 100}], "champion": "A"}', r"\.version"),
        ('{"variants": [{"name": "A", "version": "v1", "weight": 100}]}', "champion"),
        (
            '{"variants": [{"name": "A", "version": "v1", "weight": 100}], "champion": "A", '
            '"challenger": 3}',
            "challenger",
        ),
    ],
)
def test_the_parser_refuses_what_does_not_follow_the_schema(text: str, problem: str) -> None:
    with pytest.raises(DeploymentStateError, match=problem):
        parse_deployment(text)
