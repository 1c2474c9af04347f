"""The local SageMaker runtime: InvokeEndpoint over real HTTP, reading the endpoints in moto."""

from __future__ import annotations

import io
import json
import math
import random
import tarfile
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("sklearn", reason="the example models need the demo extra")

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from inference_common import parse_deployment
from localaws_testing import ACCOUNT, REGION, FakeClock

from batch_job.scoring import EndpointScorer, VersionMap
from mlpipe.core.clients import Aws, AwsTarget
from mlpipe.core.context import Context
from mlpipe.examples import ExampleModel, build_examples, inference, read_heldout
from mlpipe.local import moto_ext
from mlpipe.local.runtime import ENDPOINT_URL_VARIABLE, LocalRuntime
from mlpipe.local.server import LocalAws

BUCKET = "mlpipe-test-models"
ENDPOINT = "mlpipe-test-endpoint"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/mlpipe-sagemaker"
REFRESH = 1.0
NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ExampleModel]:
    return {m.version: m for m in build_examples(tmp_path_factory.mktemp("examples"))}


@pytest.fixture(scope="module")
def heldout(examples: dict[str, ExampleModel]) -> tuple[list[list[float]], list[int]]:
    return read_heldout(examples["v1.0.0"].heldout)


def estimator(example: ExampleModel) -> Any:
    """The fitted scikit-learn model inside an example archive."""
    with tarfile.open(example.path) as tar:
        member = tar.extractfile("model.json")
        assert member is not None
        return inference.LinearModel.from_json(member.read())


def code_archive(script: str) -> bytes:
    """A model archive holding only ``code/inference.py``."""
    data = script.encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        info = tarfile.TarInfo("code/inference.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


class Deployment:
    """Models, configurations and the endpoint in the mocked SageMaker and S3."""

    def __init__(self, aws: Aws, examples: dict[str, ExampleModel]) -> None:
        self.sagemaker = aws.client("sagemaker")
        self.s3 = aws.client("s3")
        self.s3.create_bucket(Bucket=BUCKET)
        for version, example in examples.items():
            self.upload(f"models/{version}/model.tar.gz", example.path.read_bytes())
            self.model(f"model-{version}", f"models/{version}/model.tar.gz")

    def upload(self, key: str, data: bytes) -> None:
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=data)

    def model(self, name: str, key: str) -> None:
        self.sagemaker.create_model(
            ModelName=name,
            ExecutionRoleArn=ROLE,
            PrimaryContainer={"Image": "sklearn:latest", "ModelDataUrl": f"s3://{BUCKET}/{key}"},
        )

    def config(self, name: str, *variants: tuple[str, str, float]) -> str:
        self.sagemaker.create_endpoint_config(
            EndpointConfigName=name,
            ProductionVariants=[
                {
                    "VariantName": variant,
                    "ModelName": model,
                    "InitialInstanceCount": 1,
                    "InstanceType": "ml.m5.large",
                    "InitialVariantWeight": weight,
                }
                for variant, model, weight in variants
            ],
        )
        return name

    def endpoint(self, config: str, name: str = ENDPOINT) -> None:
        self.sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=config)

    def status(self, name: str = ENDPOINT) -> str:
        return str(self.sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"])


@pytest.fixture
def moto_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """Endpoint transitions finish on the next read, unless a test sets a duration. Endpoints
    here are made by direct calls, not through mlpipe's retries: no config window to wait out."""
    monkeypatch.setenv("MLPIPE_LOCAL_ENDPOINT_CONFIG_WINDOW", "0")
    clock = FakeClock()
    monkeypatch.setattr(moto_ext, "clock", clock)
    monkeypatch.setattr(moto_ext, "ENDPOINT_TRANSITION_SECONDS", 0)
    return clock


@pytest.fixture
def deployment(
    ctx: Context, moto_clock: FakeClock, examples: dict[str, ExampleModel]
) -> Deployment:
    deployed = Deployment(ctx.aws, examples)
    deployed.endpoint(
        deployed.config("config-1", ("ModelA", "model-v1.0.0", 80), ("ModelB", "model-v2.0.0", 20))
    )
    assert deployed.status() == "InService"
    return deployed


@pytest.fixture
def clock() -> FakeClock:
    """The runtime's clock: the endpoint is described again once REFRESH seconds pass."""
    return FakeClock()


class RecordedMetrics:
    def __init__(self) -> None:
        self.values: list[tuple[str, str, float, str, dict[str, str]]] = []

    def put(self, namespace: str, name: str, value: float, unit: str, dims: Any) -> None:
        self.values.append((namespace, name, value, unit, dict(dims)))

    def of(self, name: str, variant: str) -> list[float]:
        return [v for _, n, v, _, d in self.values if n == name and d["VariantName"] == variant]


@pytest.fixture
def metrics() -> RecordedMetrics:
    """What the runtime publishes to CloudWatch, per invocation."""
    return RecordedMetrics()


@pytest.fixture
def runtime(ctx: Context, clock: FakeClock, metrics: RecordedMetrics) -> Iterator[LocalRuntime]:
    with LocalRuntime(
        ctx.aws,
        port=0,
        rng=random.Random(20240601),
        refresh_seconds=REFRESH,
        clock=clock,
        metrics=metrics,
    ) as running:
        yield running


@pytest.fixture
def client(runtime: LocalRuntime) -> Any:
    return boto3.client(
        "sagemaker-runtime",
        region_name=REGION,
        endpoint_url=runtime.endpoint_url,
        config=NO_RETRIES,
    )


def invoke(client: Any, rows: list[list[float]], **kwargs: Any) -> tuple[str, list[Any]]:
    response = client.invoke_endpoint(
        EndpointName=kwargs.pop("EndpointName", ENDPOINT),
        ContentType="application/json",
        Accept="application/json",
        Body=json.dumps({"instances": rows}),
        **kwargs,
    )
    assert response["ContentType"] == "application/json"
    return response["InvokedProductionVariant"], json.loads(response["Body"].read())["predictions"]


def served_by(client: Any, row: list[float], count: int) -> Counter[str]:
    return Counter(invoke(client, [row])[0] for _ in range(count))


def error_of(call: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value.response


# --- traffic split ------------------------------------------------------------------------------


@pytest.mark.usefixtures("deployment")
def test_requests_split_by_the_live_weights(
    client: Any, metrics: RecordedMetrics, heldout: tuple[list[list[float]], list[int]]
):
    rows, _ = heldout
    n, share = 400, 0.8
    served = Counter(invoke(client, [rows[i % len(rows)]])[0] for i in range(n))
    assert set(served) == {"ModelA", "ModelB"}
    tolerance = 4 * math.sqrt(n * share * (1 - share))
    assert abs(served["ModelA"] - n * share) <= tolerance
    for variant, count in served.items():  # what CloudWatch gets agrees with what was served
        assert metrics.of("Invocations", variant) == [1] * count
        assert metrics.of("Invocation5XXErrors", variant) == [0] * count
        assert len(metrics.of("ModelLatency", variant)) == count


@pytest.mark.usefixtures("deployment")
def test_target_variant_is_always_served(client: Any, heldout: tuple[list[list[float]], list[int]]):
    row = heldout[0][0]
    for variant in ("ModelA", "ModelB"):
        assert {invoke(client, [row], TargetVariant=variant)[0] for _ in range(40)} == {variant}


@pytest.mark.usefixtures("deployment")
def test_each_variant_answers_with_its_own_model(
    client: Any, examples: dict[str, ExampleModel], heldout: tuple[list[list[float]], list[int]]
):
    rows, labels = heldout
    answers = {}
    for variant, version in (("ModelA", "v1.0.0"), ("ModelB", "v2.0.0")):
        invoked, predictions = invoke(client, rows, TargetVariant=variant)
        assert invoked == variant
        model = estimator(examples[version])
        assert [p["label"] for p in predictions] == model.predict(rows).tolist()
        assert [p["probability"] for p in predictions] == model.predict_proba(rows)[:, 1].tolist()
        correct = sum(p["label"] == y for p, y in zip(predictions, labels, strict=True))
        assert correct / len(labels) == examples[version].accuracy
        answers[variant] = predictions
    assert any(
        a["label"] != b["label"] for a, b in zip(answers["ModelA"], answers["ModelB"], strict=True)
    )


# --- following the endpoint ---------------------------------------------------------------------


def test_weight_changes_are_followed(
    deployment: Deployment,
    client: Any,
    clock: FakeClock,
    heldout: tuple[list[list[float]], list[int]],
):
    row = heldout[0][0]
    assert served_by(client, row, 60)["ModelA"] > 0
    deployment.sagemaker.update_endpoint_weights_and_capacities(
        EndpointName=ENDPOINT,
        DesiredWeightsAndCapacities=[
            {"VariantName": "ModelA", "DesiredWeight": 0.0},
            {"VariantName": "ModelB", "DesiredWeight": 1.0},
        ],
    )
    clock.advance(REFRESH)
    assert served_by(client, row, 60) == {"ModelB": 60}


def test_the_endpoint_is_described_once_per_refresh_interval(
    ctx: Context, deployment: Deployment, client: Any, clock: FakeClock, heldout: Any
):
    row = heldout[0][0]
    ctx.aws.log.reset()
    served_by(client, row, 10)
    clock.advance(REFRESH / 2)
    served_by(client, row, 10)
    assert ctx.aws.log.count("sagemaker:DescribeEndpoint") == 1
    clock.advance(REFRESH / 2)
    served_by(client, row, 10)
    assert ctx.aws.log.count("sagemaker:DescribeEndpoint") == 2
    # Nothing changed: the configuration, the models and their archives are not read again.
    assert ctx.aws.log.count("sagemaker:DescribeEndpointConfig") == 1
    assert ctx.aws.log.count("s3:GetObject") == 2


def test_an_endpoint_update_is_followed_once_it_is_deployed(
    deployment: Deployment,
    client: Any,
    clock: FakeClock,
    moto_clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    examples: dict[str, ExampleModel],
    heldout: tuple[list[list[float]], list[int]],
):
    rows, _ = heldout
    v1 = estimator(examples["v1.0.0"]).predict(rows).tolist()
    v2 = estimator(examples["v2.0.0"]).predict(rows).tolist()
    assert v1 != v2

    def labels_of(variant: str) -> list[int]:
        return [p["label"] for p in invoke(client, rows, TargetVariant=variant)[1]]

    assert labels_of("ModelA") == v1
    monkeypatch.setattr(moto_ext, "ENDPOINT_TRANSITION_SECONDS", 60)
    config = deployment.config(
        "config-2", ("ModelA", "model-v2.0.0", 50), ("ModelB", "model-v2.0.0", 50)
    )
    deployment.sagemaker.update_endpoint(EndpointName=ENDPOINT, EndpointConfigName=config)
    clock.advance(REFRESH)
    assert deployment.status() == "Updating"
    assert labels_of("ModelA") == v1  # the previous configuration serves during the update
    moto_clock.advance(60)
    assert deployment.status() == "InService"
    clock.advance(REFRESH)
    assert labels_of("ModelA") == v2


def test_a_new_archive_is_served_after_an_update_that_deploys_it(
    deployment: Deployment,
    client: Any,
    clock: FakeClock,
    examples: dict[str, ExampleModel],
    heldout: tuple[list[list[float]], list[int]],
):
    rows, _ = heldout
    v1 = estimator(examples["v1.0.0"]).predict(rows).tolist()
    v2 = estimator(examples["v2.0.0"]).predict(rows).tolist()

    def labels_of(variant: str) -> list[int]:
        return [p["label"] for p in invoke(client, rows, TargetVariant=variant)[1]]

    assert labels_of("ModelA") == v1
    # v2's archive under v1's key: like SageMaker, the running endpoint keeps what it deployed...
    deployment.upload("models/v1.0.0/model.tar.gz", examples["v2.0.0"].path.read_bytes())
    clock.advance(REFRESH)
    assert labels_of("ModelA") == v1
    # ...and an update to a configuration of the same model loads the archive's new ETag.
    config = deployment.config(
        "config-1b", ("ModelA", "model-v1.0.0", 80), ("ModelB", "model-v2.0.0", 20)
    )
    deployment.sagemaker.update_endpoint(EndpointName=ENDPOINT, EndpointConfigName=config)
    clock.advance(REFRESH)
    assert labels_of("ModelA") == v2


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.usefixtures("deployment")
def test_an_unknown_endpoint_is_a_validation_error(client: Any):
    response = error_of(lambda: invoke(client, [[1.0] * 30], EndpointName="no-such-endpoint"))
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert response["Error"] == {
        "Code": "ValidationError",
        "Message": f"Endpoint no-such-endpoint of account {ACCOUNT} not found.",
    }


def test_an_endpoint_that_is_not_in_service_is_not_found(
    ctx: Context,
    moto_clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    examples: dict[str, ExampleModel],
    client: Any,
    clock: FakeClock,
    heldout: Any,
):
    deployed = Deployment(ctx.aws, examples)
    monkeypatch.setattr(moto_ext, "ENDPOINT_TRANSITION_SECONDS", 30)
    deployed.endpoint(deployed.config("config-1", ("ModelA", "model-v1.0.0", 1)))
    assert deployed.status() == "Creating"
    response = error_of(lambda: invoke(client, [heldout[0][0]]))
    assert response["Error"]["Code"] == "ValidationError"
    assert response["Error"]["Message"] == f"Endpoint {ENDPOINT} of account {ACCOUNT} not found."
    moto_clock.advance(30)
    clock.advance(REFRESH)
    assert invoke(client, [heldout[0][0]])[0] == "ModelA"


@pytest.mark.usefixtures("deployment")
def test_an_unknown_target_variant_is_a_validation_error(client: Any, heldout: Any):
    response = error_of(lambda: invoke(client, [heldout[0][0]], TargetVariant="ModelC"))
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert response["Error"]["Code"] == "ValidationError"
    assert "ModelC" in response["Error"]["Message"]


def test_model_code_that_raises_is_a_model_error(
    deployment: Deployment, client: Any, metrics: RecordedMetrics
):
    deployment.upload(
        "models/broken/model.tar.gz",
        code_archive(
            "def model_fn(model_dir):\n    return object()\n\n"
            "def predict_fn(data, model):\n    raise RuntimeError('the model broke')\n"
        ),
    )
    deployment.model("model-broken", "models/broken/model.tar.gz")
    deployment.endpoint(deployment.config("config-broken", ("Only", "model-broken", 1)), "broken")
    response = error_of(lambda: invoke(client, [[1.0]], EndpointName="broken"))
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert response["Error"]["Code"] == "ModelError"
    assert response["OriginalStatusCode"] == 500
    assert response["OriginalMessage"] == "RuntimeError: the model broke"
    assert response["LogStreamArn"] == (
        f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/sagemaker/Endpoints/broken"
    )
    assert response["Error"]["Message"].startswith(
        'Received server error (500) from primary with message "RuntimeError: the model broke".'
    )
    assert metrics.of("Invocation5XXErrors", "Only") == [1]
    assert metrics.of("Invocations", "Only") == [1]


@pytest.mark.usefixtures("deployment")
def test_a_request_the_model_code_refuses_is_a_model_error_with_its_status(client: Any):
    response = error_of(
        lambda: client.invoke_endpoint(
            EndpointName=ENDPOINT, ContentType="application/json", Body=b'{"instances": [[1, 2]]}'
        )
    )
    assert response["Error"]["Code"] == "ModelError"
    assert response["OriginalStatusCode"] == 400
    assert "30 features" in response["OriginalMessage"]
    response = error_of(
        lambda: client.invoke_endpoint(EndpointName=ENDPOINT, ContentType="text/csv", Body=b"1,2")
    )
    assert response["OriginalStatusCode"] == 415


def test_a_model_that_fails_to_load_is_a_model_error(deployment: Deployment, client: Any):
    deployment.upload(
        "models/unloadable/model.tar.gz",
        code_archive("def model_fn(model_dir):\n    raise OSError('no weights here')\n"),
    )
    deployment.model("model-unloadable", "models/unloadable/model.tar.gz")
    deployment.endpoint(deployment.config("config-u", ("Only", "model-unloadable", 1)), "u")
    response = error_of(lambda: invoke(client, [[1.0]], EndpointName="u"))
    assert response["Error"]["Code"] == "ModelError"
    assert response["OriginalStatusCode"] == 500
    assert "no weights here" in response["OriginalMessage"]


def test_missing_handlers_fall_back_to_the_containers_defaults(deployment: Deployment, client: Any):
    deployment.upload(
        "models/minimal/model.tar.gz",
        code_archive(
            "class Summer:\n"
            "    def predict(self, rows):\n"
            "        return rows.sum(axis=1)\n\n"
            "def model_fn(model_dir):\n    return Summer()\n"
        ),
    )
    deployment.model("model-minimal", "models/minimal/model.tar.gz")
    deployment.endpoint(deployment.config("config-m", ("Only", "model-minimal", 1)), "minimal")
    response = client.invoke_endpoint(
        EndpointName="minimal", ContentType="application/json", Body=b"[[1, 2], [3, 4.5]]"
    )
    assert response["ContentType"] == "application/json"
    assert json.loads(response["Body"].read()) == [3.0, 7.5]
    response = client.invoke_endpoint(
        EndpointName="minimal", ContentType="text/csv", Accept="text/csv", Body=b"1,2\n3,4\n"
    )
    assert response["ContentType"] == "text/csv"
    assert response["Body"].read() == b"3.0\n7.0\n"


# --- running unchanged client code --------------------------------------------------------------


@pytest.mark.usefixtures("deployment")
def test_boto3_code_runs_unchanged_pointed_at_the_runtime_by_environment(
    runtime: LocalRuntime, monkeypatch: pytest.MonkeyPatch, heldout: Any
):
    for name, value in runtime.environment().items():
        monkeypatch.setenv(name, value)
    assert runtime.environment() == {ENDPOINT_URL_VARIABLE: runtime.endpoint_url}
    scorer = EndpointScorer(
        boto3.client("sagemaker-runtime", region_name=REGION),
        ENDPOINT,
        VersionMap(
            parse_deployment(
                '{"variants": [{"name": "ModelA", "version": "v1.0.0", "weight": 50}, '
                '{"name": "ModelB", "version": "v2.0.0", "weight": 50}], "champion": "ModelA"}'
            )
        ),
    )
    rows = heldout[0][:5]
    result = scorer(rows)
    assert result.variant in ("ModelA", "ModelB")
    assert result.model_version == {"ModelA": "v1.0.0", "ModelB": "v2.0.0"}[result.variant]
    assert [set(p) for p in result.predictions] == [{"label", "probability"}] * len(rows)


def test_other_paths_are_unknown_operations(runtime: LocalRuntime):
    request = urllib.request.Request(f"{runtime.endpoint_url}/endpoints/x", method="GET")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with pytest.raises(urllib.error.HTTPError) as caught:
        opener.open(request, timeout=5)
    assert caught.value.code == 404
    assert caught.value.headers["x-amzn-ErrorType"] == "UnknownOperationException"


def test_stop_frees_the_port_and_the_extracted_models(ctx: Context):
    runtime = LocalRuntime(ctx.aws, port=0).start()
    workdir = runtime._workdir
    assert workdir is not None and workdir.is_dir()
    url = runtime.endpoint_url
    runtime.stop()
    assert not runtime.running
    assert not workdir.exists()
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with pytest.raises(urllib.error.URLError):
        opener.open(f"{url}/endpoints/x/invocations", data=b"{}", timeout=5)


# --- against the embedded AWS over HTTP ---------------------------------------------------------


@pytest.mark.usefixtures("aws_env")
def test_the_runtime_serves_the_embedded_aws_over_http(
    monkeypatch: pytest.MonkeyPatch,
    examples: dict[str, ExampleModel],
    heldout: tuple[list[list[float]], list[int]],
):
    monkeypatch.setattr(moto_ext, "ENDPOINT_TRANSITION_SECONDS", 0)
    with LocalAws(port=0) as local:
        aws = Aws(AwsTarget(local=True, endpoint_url=local.endpoint_url))
        try:
            deployed = Deployment(aws, examples)
            deployed.endpoint(deployed.config("config-1", ("ModelB", "model-v2.0.0", 1)))
            with LocalRuntime(aws, port=0, refresh_seconds=0) as runtime:
                client = boto3.client(
                    "sagemaker-runtime", region_name=REGION, endpoint_url=runtime.endpoint_url
                )
                rows, _ = heldout
                invoked, predictions = invoke(client, rows[:10])
        finally:
            reset = urllib.request.Request(f"{local.endpoint_url}/moto-api/reset", method="POST")
            urllib.request.build_opener(urllib.request.ProxyHandler({})).open(reset, timeout=5)
    assert invoked == "ModelB"
    expected = estimator(examples["v2.0.0"]).predict(rows[:10]).tolist()
    assert [p["label"] for p in predictions] == expected


# --- metrics ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("deployment")
def test_each_invocation_publishes_sagemakers_metrics_per_variant(
    ctx: Context, clock: FakeClock, heldout: tuple[list[list[float]], list[int]]
):
    metrics, logged = RecordedMetrics(), []

    class Logs:
        def write(self, group: str, stream: str, message: str) -> None:
            logged.append((group, stream, message))

    with LocalRuntime(ctx.aws, port=0, clock=clock, metrics=metrics, logs=Logs()) as runtime:  # type: ignore[arg-type]
        client = boto3.client(
            "sagemaker-runtime", region_name=REGION, endpoint_url=runtime.endpoint_url
        )
        invoke(client, [heldout[0][0]], TargetVariant="ModelB")
        error_of(
            lambda: client.invoke_endpoint(
                EndpointName=ENDPOINT,
                ContentType="application/json",
                Body=b'{"instances": [[1, 2]]}',
                TargetVariant="ModelB",
            )
        )
    assert {(ns, unit) for ns, _, _, unit, _ in metrics.values} == {
        ("AWS/SageMaker", "None"),
        ("AWS/SageMaker", "Microseconds"),
    }
    assert all(d == {"EndpointName": ENDPOINT, "VariantName": "ModelB"} for *_, d in metrics.values)
    assert metrics.of("Invocations", "ModelB") == [1, 1]
    assert metrics.of("Invocation4XXErrors", "ModelB") == [0, 1]
    assert metrics.of("Invocation5XXErrors", "ModelB") == [0, 0]
    latencies = metrics.of("ModelLatency", "ModelB")
    assert len(latencies) == 2 and all(v > 0 for v in latencies)
    assert len(metrics.of("OverheadLatency", "ModelB")) == 2
    # the container log: the model loaded, then the refused request
    group, stream = f"/aws/sagemaker/Endpoints/{ENDPOINT}", "ModelB/model-v2.0.0"
    assert [(g, s) for g, s, _ in logged] == [(group, stream)] * 2
    assert logged[0][2] == "model model-v2.0.0: loaded"
    assert logged[1][2].startswith("ERROR status 400: InferenceError: each instance needs 30")
