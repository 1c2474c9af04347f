"""The moto extensions under mock_aws: SageMaker endpoints, Glue UpdateCrawler, Athena
UpdateWorkGroup."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, WaiterError
from localaws_testing import ACCOUNT, REGION, TRANSITION_SECONDS, FakeClock
from moto.glue.models import FakeCrawler
from moto.sagemaker.models import SageMakerModelBackend
from moto.sagemaker.responses import SageMakerResponse

from mlpipe.local.moto_ext import install_extensions, uninstall_extensions

pytestmark = pytest.mark.usefixtures("mocked")

ROLE = f"arn:aws:iam::{ACCOUNT}:role/mlpipe-sagemaker"


def endpoint_arn(name: str) -> str:
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{name}"


def variant(name: str, model: str, weight: float, count: int = 1) -> dict[str, Any]:
    return {
        "VariantName": name,
        "ModelName": model,
        "InitialInstanceCount": count,
        "InstanceType": "ml.m5.large",
        "InitialVariantWeight": weight,
    }


@pytest.fixture
def sm() -> Any:
    client = boto3.client("sagemaker", region_name=REGION)
    for model in ("model-a", "model-b", "model-c"):
        client.create_model(
            ModelName=model, ExecutionRoleArn=ROLE, PrimaryContainer={"Image": "img:latest"}
        )
    client.create_endpoint_config(
        EndpointConfigName="config-1",
        ProductionVariants=[variant("ModelA", "model-a", 0.8), variant("ModelB", "model-b", 0.2)],
    )
    client.create_endpoint_config(
        EndpointConfigName="config-2",
        ProductionVariants=[
            variant("ModelA", "model-a", 0.5, count=2),
            variant("ModelC", "model-c", 0.5, count=3),
        ],
    )
    return client


@pytest.fixture
def live(sm: Any, clock: FakeClock) -> Any:
    """An InService endpoint "ep" on config-1."""
    sm.create_endpoint(EndpointName="ep", EndpointConfigName="config-1")
    clock.advance(TRANSITION_SECONDS)
    assert sm.describe_endpoint(EndpointName="ep")["EndpointStatus"] == "InService"
    return sm


def variants_of(description: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    return {
        v["VariantName"]: (
            v.get("CurrentWeight"),
            v.get("DesiredWeight"),
            v.get("CurrentInstanceCount"),
            v.get("DesiredInstanceCount"),
        )
        for v in description["ProductionVariants"]
    }


def error_of(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    error = excinfo.value.response["Error"]
    return error["Code"], error["Message"]


# --- SageMaker UpdateEndpoint -------------------------------------------------------------------


def test_update_endpoint_is_updating_then_serves_the_new_config(live: Any, clock: FakeClock):
    response = live.update_endpoint(EndpointName="ep", EndpointConfigName="config-2")
    assert response["EndpointArn"] == endpoint_arn("ep")

    during = live.describe_endpoint(EndpointName="ep")
    assert during["EndpointStatus"] == "Updating"
    assert during["EndpointConfigName"] == "config-1"
    pending = during["PendingDeploymentSummary"]
    assert pending["EndpointConfigName"] == "config-2"
    assert [(v["VariantName"], v["InstanceType"]) for v in pending["ProductionVariants"]] == [
        ("ModelA", "ml.m5.large"),
        ("ModelC", "ml.m5.large"),
    ]
    assert variants_of(during) == {"ModelA": (0.8, 0.8, 1, 1), "ModelB": (0.2, 0.2, 1, 1)}

    clock.advance(TRANSITION_SECONDS)
    after = live.describe_endpoint(EndpointName="ep")
    assert after["EndpointStatus"] == "InService"
    assert after["EndpointConfigName"] == "config-2"
    assert "PendingDeploymentSummary" not in after
    assert "FailureReason" not in after
    assert variants_of(after) == {"ModelA": (0.5, 0.5, 2, 2), "ModelC": (0.5, 0.5, 3, 3)}
    config = live.describe_endpoint_config(EndpointConfigName=after["EndpointConfigName"])
    assert [(v["ModelName"], v["InstanceType"]) for v in config["ProductionVariants"]] == [
        ("model-a", "ml.m5.large"),
        ("model-c", "ml.m5.large"),
    ]
    listed = live.list_endpoints()["Endpoints"]
    assert [(e["EndpointName"], e["EndpointStatus"]) for e in listed] == [("ep", "InService")]


def test_retain_all_variant_properties_keeps_live_weights_and_counts(live: Any, clock: FakeClock):
    live.update_endpoint_weights_and_capacities(
        EndpointName="ep",
        DesiredWeightsAndCapacities=[
            {"VariantName": "ModelA", "DesiredWeight": 0.3, "DesiredInstanceCount": 4}
        ],
    )
    clock.advance(TRANSITION_SECONDS)

    live.update_endpoint(
        EndpointName="ep", EndpointConfigName="config-2", RetainAllVariantProperties=True
    )
    clock.advance(TRANSITION_SECONDS)

    after = live.describe_endpoint(EndpointName="ep")
    assert after["EndpointConfigName"] == "config-2"
    # ModelA was live: it keeps its weight and count; ModelC is new: it takes the config's.
    assert variants_of(after) == {"ModelA": (0.3, 0.3, 4, 4), "ModelC": (0.5, 0.5, 3, 3)}


def test_excluded_properties_come_from_the_new_config(live: Any, clock: FakeClock):
    live.update_endpoint_weights_and_capacities(
        EndpointName="ep",
        DesiredWeightsAndCapacities=[
            {"VariantName": "ModelA", "DesiredWeight": 0.3, "DesiredInstanceCount": 4}
        ],
    )
    clock.advance(TRANSITION_SECONDS)

    live.update_endpoint(
        EndpointName="ep",
        EndpointConfigName="config-2",
        RetainAllVariantProperties=True,
        ExcludeRetainedVariantProperties=[{"VariantPropertyType": "DesiredWeight"}],
    )
    clock.advance(TRANSITION_SECONDS)

    after = live.describe_endpoint(EndpointName="ep")
    assert variants_of(after)["ModelA"] == (0.5, 0.5, 4, 4)


def test_update_to_an_undeployable_config_keeps_the_old_one_live(live: Any, clock: FakeClock):
    live.create_endpoint_config(
        EndpointConfigName="config-gone",
        ProductionVariants=[variant("ModelA", "model-a", 0.5), variant("ModelC", "model-c", 0.5)],
    )
    live.delete_model(ModelName="model-c")
    before = live.describe_endpoint(EndpointName="ep")

    live.update_endpoint(EndpointName="ep", EndpointConfigName="config-gone")
    clock.advance(TRANSITION_SECONDS)
    after = live.describe_endpoint(EndpointName="ep")

    assert after["EndpointStatus"] == "InService"
    assert after["EndpointConfigName"] == "config-1"
    assert variants_of(after) == variants_of(before)
    model_arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model/model-c"
    assert after["FailureReason"] == f'Could not find model "{model_arn}".'
    assert "PendingDeploymentSummary" not in after
    assert after["LastModifiedTime"] == clock.utc()
    assert after["LastModifiedTime"] > before["LastModifiedTime"]

    # Models are checked when the update completes; once the model exists again it succeeds.
    live.create_model(ModelName="model-c", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": "i"})
    live.update_endpoint(EndpointName="ep", EndpointConfigName="config-gone")
    clock.advance(TRANSITION_SECONDS)
    fixed = live.describe_endpoint(EndpointName="ep")
    assert fixed["EndpointConfigName"] == "config-gone"
    assert "FailureReason" not in fixed


@pytest.mark.parametrize(
    ("endpoint", "config", "message"),
    [
        ("missing", "config-2", f'Could not find endpoint "{endpoint_arn("missing")}".'),
        ("ep", "config-missing", 'Could not find endpoint configuration "config-missing".'),
        ("ep", "config-2", f'Cannot update in-progress endpoint "{endpoint_arn("ep")}".'),
    ],
    ids=["missing-endpoint", "missing-config", "in-progress"],
)
def test_update_endpoint_refusals(
    sm: Any, clock: FakeClock, endpoint: str, config: str, message: str
):
    sm.create_endpoint(EndpointName="ep", EndpointConfigName="config-1")
    if "in-progress" not in message:
        clock.advance(TRANSITION_SECONDS)
    with pytest.raises(ClientError) as excinfo:
        sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=config)
    assert error_of(excinfo) == ("ValidationException", message)


def test_update_endpoint_is_refused_while_updating(live: Any, clock: FakeClock):
    live.update_endpoint(EndpointName="ep", EndpointConfigName="config-2")
    with pytest.raises(ClientError) as excinfo:
        live.update_endpoint(EndpointName="ep", EndpointConfigName="config-1")
    assert error_of(excinfo) == (
        "ValidationException",
        f'Cannot update in-progress endpoint "{endpoint_arn("ep")}".',
    )
    clock.advance(TRANSITION_SECONDS)
    live.update_endpoint(EndpointName="ep", EndpointConfigName="config-1")


# --- SageMaker CreateEndpoint and UpdateEndpointWeightsAndCapacities ---------------------------


def test_create_endpoint_waiter_polls_until_in_service(sm: Any, clock: FakeClock):
    calls: list[str] = []

    def tick(**_: Any) -> None:
        calls.append("DescribeEndpoint")
        clock.advance(TRANSITION_SECONDS / 2)

    sm.meta.events.register("before-call.sagemaker.DescribeEndpoint", tick)
    sm.create_endpoint(EndpointName="ep", EndpointConfigName="config-1")
    assert sm.list_endpoints()["Endpoints"][0]["EndpointStatus"] == "Creating"

    sm.get_waiter("endpoint_in_service").wait(
        EndpointName="ep", WaiterConfig={"Delay": 0, "MaxAttempts": 5}
    )

    assert len(calls) == 2  # Creating at half the delay, InService once it has passed
    assert sm.describe_endpoint(EndpointName="ep")["EndpointStatus"] == "InService"


def test_create_endpoint_with_a_missing_model_fails(sm: Any, clock: FakeClock):
    sm.delete_model(ModelName="model-b")
    sm.create_endpoint(EndpointName="ep", EndpointConfigName="config-1")
    clock.advance(TRANSITION_SECONDS)

    with pytest.raises(WaiterError, match="Failed"):
        sm.get_waiter("endpoint_in_service").wait(
            EndpointName="ep", WaiterConfig={"Delay": 0, "MaxAttempts": 2}
        )
    described = sm.describe_endpoint(EndpointName="ep")
    assert described["EndpointStatus"] == "Failed"
    model_arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model/model-b"
    assert described["FailureReason"] == f'Could not find model "{model_arn}".'


def test_update_weights_passes_through_updating_and_is_refused_while_creating(
    sm: Any, clock: FakeClock
):
    sm.create_endpoint(EndpointName="ep", EndpointConfigName="config-1")
    change = [{"VariantName": "ModelB", "DesiredWeight": 0.6}]
    with pytest.raises(ClientError) as excinfo:
        sm.update_endpoint_weights_and_capacities(
            EndpointName="ep", DesiredWeightsAndCapacities=change
        )
    assert error_of(excinfo) == (
        "ValidationException",
        f'Cannot update in-progress endpoint "{endpoint_arn("ep")}".',
    )

    clock.advance(TRANSITION_SECONDS)
    sm.update_endpoint_weights_and_capacities(EndpointName="ep", DesiredWeightsAndCapacities=change)
    during = sm.describe_endpoint(EndpointName="ep")
    assert during["EndpointStatus"] == "Updating"
    assert variants_of(during)["ModelB"][1] == 0.6
    clock.advance(TRANSITION_SECONDS)
    assert sm.describe_endpoint(EndpointName="ep")["EndpointStatus"] == "InService"


def test_install_extensions_is_idempotent():
    methods = (
        SageMakerResponse.update_endpoint,
        SageMakerModelBackend.describe_endpoint,
        SageMakerModelBackend.create_endpoint,
        FakeCrawler.as_dict,
    )
    install_extensions()
    install_extensions()
    assert (
        SageMakerResponse.update_endpoint,
        SageMakerModelBackend.describe_endpoint,
        SageMakerModelBackend.create_endpoint,
        FakeCrawler.as_dict,
    ) == methods


# --- Glue UpdateCrawler -------------------------------------------------------------------------


@pytest.fixture
def glue() -> Any:
    client = boto3.client("glue", region_name=REGION)
    client.create_crawler(
        Name="crawler",
        Role="arn:aws:iam::123456789012:role/glue",
        DatabaseName="db",
        Targets={"S3Targets": [{"Path": "s3://bucket/raw/"}]},
        Schedule="cron(0 1 * * ? *)",
    )
    return client


def test_update_crawler_round_trip(glue: Any):
    before = glue.get_crawler(Name="crawler")["Crawler"]
    glue.update_crawler(
        Name="crawler",
        Role="arn:aws:iam::123456789012:role/glue-2",
        DatabaseName="db2",
        Description="nightly",
        Targets={"S3Targets": [{"Path": "s3://bucket/curated/", "Exclusions": ["*.tmp"]}]},
        Schedule="cron(0 3 * * ? *)",
        TablePrefix="p_",
        SchemaChangePolicy={"UpdateBehavior": "LOG", "DeleteBehavior": "LOG"},
        RecrawlPolicy={"RecrawlBehavior": "CRAWL_EVERYTHING"},
        LineageConfiguration={"CrawlerLineageSettings": "DISABLE"},
        Configuration='{"Version":1.0}',
        LakeFormationConfiguration={"UseLakeFormationCredentials": False},
    )
    after = glue.get_crawler(Name="crawler")["Crawler"]

    assert after["Role"] == "arn:aws:iam::123456789012:role/glue-2"
    assert after["DatabaseName"] == "db2"
    assert after["Description"] == "nightly"
    assert after["Targets"]["S3Targets"] == [
        {"Path": "s3://bucket/curated/", "Exclusions": ["*.tmp"]}
    ]
    assert after["Schedule"] == {"ScheduleExpression": "cron(0 3 * * ? *)", "State": "SCHEDULED"}
    assert after["TablePrefix"] == "p_"
    assert after["SchemaChangePolicy"] == {"UpdateBehavior": "LOG", "DeleteBehavior": "LOG"}
    assert after["RecrawlPolicy"] == {"RecrawlBehavior": "CRAWL_EVERYTHING"}
    assert after["LineageConfiguration"] == {"CrawlerLineageSettings": "DISABLE"}
    assert after["Configuration"] == '{"Version":1.0}'
    assert after["LakeFormationConfiguration"] == {"UseLakeFormationCredentials": False}
    assert after["Version"] == before["Version"] + 1


def test_update_crawler_leaves_unnamed_fields_alone(glue: Any):
    glue.update_crawler(Name="crawler", Description="only this")
    after = glue.get_crawler(Name="crawler")["Crawler"]
    assert after["Description"] == "only this"
    assert after["Schedule"]["ScheduleExpression"] == "cron(0 1 * * ? *)"
    assert after["Targets"] == {"S3Targets": [{"Path": "s3://bucket/raw/"}]}


def test_update_crawler_errors(glue: Any):
    with pytest.raises(ClientError) as excinfo:
        glue.update_crawler(Name="missing", Description="x")
    assert error_of(excinfo)[0] == "EntityNotFoundException"

    glue.start_crawler(Name="crawler")
    with pytest.raises(ClientError) as excinfo:
        glue.update_crawler(Name="crawler", Description="x")
    assert error_of(excinfo)[0] == "CrawlerRunningException"


# --- Athena UpdateWorkGroup ---------------------------------------------------------------------


@pytest.fixture
def athena() -> Any:
    client = boto3.client("athena", region_name=REGION)
    client.create_work_group(
        Name="wg",
        Description="first",
        Configuration={
            "ResultConfiguration": {
                "OutputLocation": "s3://results/old/",
                "ExpectedBucketOwner": ACCOUNT,
            },
            "BytesScannedCutoffPerQuery": 10_000_000,
        },
    )
    return client


def test_update_work_group_round_trip(athena: Any):
    athena.update_work_group(
        WorkGroup="wg",
        Description="second",
        State="DISABLED",
        ConfigurationUpdates={
            "EnforceWorkGroupConfiguration": False,
            "ResultConfigurationUpdates": {
                "OutputLocation": "s3://results/new/",
                "EncryptionConfiguration": {"EncryptionOption": "SSE_KMS", "KmsKey": "key-1"},
                "RemoveExpectedBucketOwner": True,
            },
            "PublishCloudWatchMetricsEnabled": True,
            "RemoveBytesScannedCutoffPerQuery": True,
            "RequesterPaysEnabled": True,
            "EngineVersion": {"SelectedEngineVersion": "Athena engine version 3"},
        },
    )
    group = athena.get_work_group(WorkGroup="wg")["WorkGroup"]
    configuration = group["Configuration"]

    assert group["Description"] == "second"
    assert group["State"] == "DISABLED"
    assert configuration["ResultConfiguration"] == {
        "OutputLocation": "s3://results/new/",
        "EncryptionConfiguration": {"EncryptionOption": "SSE_KMS", "KmsKey": "key-1"},
    }
    assert configuration["EnforceWorkGroupConfiguration"] is False
    assert configuration["PublishCloudWatchMetricsEnabled"] is True
    assert configuration["RequesterPaysEnabled"] is True
    assert "BytesScannedCutoffPerQuery" not in configuration
    assert configuration["EngineVersion"] == {
        "SelectedEngineVersion": "Athena engine version 3",
        "EffectiveEngineVersion": "Athena engine version 3",
    }


def test_update_work_group_removes_and_sets_one_member(athena: Any):
    athena.update_work_group(
        WorkGroup="wg",
        ConfigurationUpdates={
            "ResultConfigurationUpdates": {"RemoveOutputLocation": True},
            "BytesScannedCutoffPerQuery": 20_000_000,
        },
    )
    group = athena.get_work_group(WorkGroup="wg")["WorkGroup"]
    assert group["Description"] == "first"
    assert group["State"] == "ENABLED"
    assert group["Configuration"]["ResultConfiguration"] == {"ExpectedBucketOwner": ACCOUNT}
    assert group["Configuration"]["BytesScannedCutoffPerQuery"] == 20_000_000


def test_update_missing_work_group(athena: Any):
    with pytest.raises(ClientError) as excinfo:
        athena.update_work_group(WorkGroup="missing", Description="x")
    assert error_of(excinfo) == ("InvalidRequestException", "WorkGroup is not found.")
    assert excinfo.value.response["AthenaErrorCode"] == "INVALID_INPUT"


def test_uninstall_gives_moto_back_its_own_behaviour(sm: Any):
    uninstall_extensions()
    sm.create_endpoint(EndpointName="ep", EndpointConfigName="config-1")
    assert sm.describe_endpoint(EndpointName="ep")["EndpointStatus"] == "InService"
    assert not hasattr(SageMakerResponse, "update_endpoint")
    install_extensions()
    sm.create_endpoint(EndpointName="ep2", EndpointConfigName="config-1")
    assert sm.describe_endpoint(EndpointName="ep2")["EndpointStatus"] == "Creating"
