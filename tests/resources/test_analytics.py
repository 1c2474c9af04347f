"""Glue database, crawler and Athena workgroup on moto."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from mlpipe.core.context import Context
from mlpipe.core.executor import Report, execute
from mlpipe.core.plan import Action, plan_apply, plan_destroy
from mlpipe.core.resource import Resource
from mlpipe.resources import analytics, iam, kms
from mlpipe.resources.analytics import CRAWLER, DATABASE, WORKGROUP
from tests.resources.serving import needed
from tests.support import Shared, build_once, converge, four_step

REGION = "us-east-1"
ACCOUNT = "123456789012"


def stack(ctx: Context) -> list[Resource]:
    """Analytics with the key and the crawler's role."""
    return needed(analytics.resources(ctx), [*kms.resources(ctx), *iam.resources(ctx)])


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Shared[Report]:
    return build_once(tmp_path_factory.mktemp("built"), lambda ctx: converge(stack(ctx)))


@pytest.fixture
def applied(ctx: Context, built: Shared[Report]) -> Context:
    """The stack applied: a copy of the account one converge built for the module."""
    built.restore()
    return ctx


def test_four_step(ctx: Context) -> None:
    """The idempotency check, once: the other tests start from `applied` (one converge)."""
    four_step(ctx, stack(ctx))


def client(service: str) -> Any:
    return boto3.client(service, region_name=REGION)


def key_arn(ctx: Context) -> str:
    return client("kms").describe_key(KeyId=ctx.names.kms_alias)["KeyMetadata"]["Arn"]


def with_analytics(ctx: Context, **settings: Any) -> None:
    spec = ctx.spec
    ctx.spec = spec.model_copy(update={"analytics": spec.analytics.model_copy(update=settings)})


def glue_tags(kind: str, name: str) -> dict[str, str]:
    arn = f"arn:aws:glue:{REGION}:{ACCOUNT}:{kind}/{name}"
    return client("glue").get_tags(ResourceArn=arn)["Tags"]


def test_database_is_described_and_tagged(applied: Context) -> None:
    name = applied.names.glue_database
    database = client("glue").get_database(Name=name)["Database"]
    assert database["Description"] == "mlpipe ml-pipeline-prod: prediction results catalog"
    tags = glue_tags("database", name)
    assert tags["mlpipe:resource"] == DATABASE and tags["Project"] == "ml-inference"


def test_crawler_covers_the_prediction_outputs_and_the_table(applied: Context) -> None:
    names = applied.names
    crawler = client("glue").get_crawler(Name=names.crawler)["Crawler"]
    role = client("iam").get_role(RoleName=names.role("glue-crawler"))["Role"]
    assert crawler["Role"] == role["Arn"]
    assert crawler["DatabaseName"] == names.glue_database
    assert crawler["Targets"]["S3Targets"] == [
        {"Path": f"s3://{names.data_bucket}/predictions/", "Exclusions": []}
    ]
    assert crawler["Targets"]["DynamoDBTargets"] == [
        {"Path": names.predictions_table, "scanAll": False}
    ]
    assert crawler["Schedule"]["ScheduleExpression"] == "cron(0 3 * * ? *)"
    assert crawler["SchemaChangePolicy"] == {
        "UpdateBehavior": "UPDATE_IN_DATABASE",
        "DeleteBehavior": "LOG",
    }
    assert json.loads(crawler["Configuration"])["Grouping"] == {
        "TableGroupingPolicy": "CombineCompatibleSchemas"
    }
    assert glue_tags("crawler", names.crawler)["mlpipe:resource"] == CRAWLER


def test_crawler_role_reads_only_the_predictions(applied: Context) -> None:
    names = applied.names
    doc = client("iam").get_role_policy(
        RoleName=names.role("glue-crawler"), PolicyName="least-privilege"
    )["PolicyDocument"]
    statements = {s["Sid"]: s for s in doc["Statement"]}
    data = f"arn:aws:s3:::{names.data_bucket}"
    assert statements["ReadPredictions"]["Resource"] == [f"{data}/predictions/*"]
    assert statements["ListPredictions"]["Resource"] == [data]
    assert statements["ListPredictions"]["Condition"] == {
        "StringLike": {"s3:prefix": ["predictions", "predictions/*"]}
    }
    assert statements["ReadTable"]["Resource"] == [
        f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{names.predictions_table}"
    ]


def test_workgroup_enforces_encrypted_results_and_metrics(applied: Context) -> None:
    names = applied.names
    group = client("athena").get_work_group(WorkGroup=names.workgroup)["WorkGroup"]
    config = group["Configuration"]
    assert group["State"] == "ENABLED"
    assert config["EnforceWorkGroupConfiguration"] is True
    assert config["PublishCloudWatchMetricsEnabled"] is True
    assert config["BytesScannedCutoffPerQuery"] == 10_000_000_000
    assert config["ResultConfiguration"] == {
        "OutputLocation": f"s3://{names.data_bucket}/athena-results/",
        "EncryptionConfiguration": {"EncryptionOption": "SSE_KMS", "KmsKey": key_arn(applied)},
        "ExpectedBucketOwner": ACCOUNT,
    }
    arn = f"arn:aws:athena:{REGION}:{ACCOUNT}:workgroup/{names.workgroup}"
    tags = client("athena").list_tags_for_resource(ResourceARN=arn)["Tags"]
    assert {"Key": "mlpipe:resource", "Value": WORKGROUP} in tags


def test_tags_go_on_at_create(ctx: Context) -> None:
    converge(stack(ctx))
    assert [c for c in ctx.aws.log.calls if c.split(":")[1] == "TagResource"] == []


def test_workgroup_drift_results_location_and_key_are_repaired_with_update_work_group(
    applied: Context,
) -> None:
    athena, name = client("athena"), applied.names.workgroup
    athena.update_work_group(
        WorkGroup=name,
        ConfigurationUpdates={
            "EnforceWorkGroupConfiguration": False,
            "ResultConfigurationUpdates": {
                "OutputLocation": "s3://elsewhere/",
                "EncryptionConfiguration": {"EncryptionOption": "SSE_S3"},
            },
            "RemoveBytesScannedCutoffPerQuery": True,
        },
    )
    plan = plan_apply(stack(applied))
    assert {s.key: sorted(s.diff.paths()) for s in plan.changes} == {
        WORKGROUP: [
            "Configuration.BytesScannedCutoffPerQuery",
            "Configuration.EnforceWorkGroupConfiguration",
            "Configuration.ResultConfiguration.EncryptionConfiguration.EncryptionOption",
            "Configuration.ResultConfiguration.EncryptionConfiguration.KmsKey",
            "Configuration.ResultConfiguration.OutputLocation",
        ]
    }
    applied.aws.log.reset()
    assert execute(plan).ok
    assert applied.aws.log.writes() == ["athena:UpdateWorkGroup"]
    config = athena.get_work_group(WorkGroup=name)["WorkGroup"]["Configuration"]
    assert config["EnforceWorkGroupConfiguration"] is True
    assert config["ResultConfiguration"]["EncryptionConfiguration"] == {
        "EncryptionOption": "SSE_KMS",
        "KmsKey": key_arn(applied),
    }
    assert config["ResultConfiguration"]["OutputLocation"].endswith("/athena-results/")
    assert config["BytesScannedCutoffPerQuery"] == 10_000_000_000
    assert not plan_apply(stack(applied)).changes


def test_spec_changes_update_in_place(applied: Context) -> None:
    with_analytics(
        applied,
        crawl_dynamodb=False,
        crawler_schedule="cron(30 4 * * ? *)",
        bytes_scanned_cutoff=20_000_000_000,
    )
    plan = plan_apply(stack(applied))
    changes = {s.key: s.diff.paths() for s in plan.changes}
    assert changes == {
        "iam:glue-crawler": ["Policies"],
        CRAWLER: ["Targets", "Schedule"],
        WORKGROUP: ["Configuration.BytesScannedCutoffPerQuery"],
    }
    assert all(s.action is Action.UPDATE for s in plan.changes)
    applied.aws.log.reset()
    assert execute(plan).ok
    assert sorted(applied.aws.log.writes()) == [
        "athena:UpdateWorkGroup",
        "glue:UpdateCrawler",
        "iam:PutRolePolicy",
    ]
    crawler = client("glue").get_crawler(Name=applied.names.crawler)["Crawler"]
    assert "DynamoDBTargets" not in crawler["Targets"]
    assert crawler["Schedule"]["ScheduleExpression"] == "cron(30 4 * * ? *)"
    assert not plan_apply(stack(applied)).changes


def test_crawler_schedule_description_and_tag_drift_are_repaired(applied: Context) -> None:
    glue, names = client("glue"), applied.names
    glue.update_crawler(Name=names.crawler, Schedule="cron(0 5 * * ? *)")
    glue.update_database(
        Name=names.glue_database,
        DatabaseInput={"Name": names.glue_database, "Description": "changed"},
    )
    arn = f"arn:aws:glue:{REGION}:{ACCOUNT}:crawler/{names.crawler}"
    glue.tag_resource(ResourceArn=arn, TagsToAdd={"stray": "1"})
    plan = plan_apply(stack(applied))
    assert {s.key: sorted(s.diff.paths()) for s in plan.changes} == {
        DATABASE: ["Description"],
        CRAWLER: ["Schedule", "Tags"],
    }
    applied.aws.log.reset()
    assert execute(plan).ok
    # The schedule with UpdateCrawler, the tags with the tagging API alone.
    assert sorted(applied.aws.log.writes()) == [
        "glue:UntagResource",
        "glue:UpdateCrawler",
        "glue:UpdateDatabase",
    ]
    crawler = glue.get_crawler(Name=names.crawler)["Crawler"]
    assert crawler["Schedule"]["ScheduleExpression"] == "cron(0 3 * * ? *)"
    assert "stray" not in glue_tags("crawler", names.crawler)
    assert not plan_apply(stack(applied)).changes


def test_no_scan_cutoff_is_said_at_plan_time(ctx: Context) -> None:
    with_analytics(ctx, bytes_scanned_cutoff=None)
    plan = plan_apply(stack(ctx))
    workgroup = next(s for s in plan.steps if s.key == WORKGROUP)
    assert any("bytes_scanned_cutoff" in note for note in workgroup.notes)
    assert execute(plan).ok
    config = client("athena").get_work_group(WorkGroup=ctx.names.workgroup)["WorkGroup"][
        "Configuration"
    ]
    assert "BytesScannedCutoffPerQuery" not in config


def test_destroy_removes_everything(applied: Context) -> None:
    resources = analytics.resources(applied)
    plan = plan_destroy(resources)
    assert {s.key: s.action for s in plan.steps} == {
        WORKGROUP: Action.DELETE,
        CRAWLER: Action.DELETE,
        DATABASE: Action.DELETE,
    }
    keys = [s.key for s in plan.steps]
    assert keys.index(CRAWLER) < keys.index(DATABASE)
    assert execute(plan).ok
    glue = client("glue")
    assert glue.get_databases()["DatabaseList"] == []
    assert glue.get_crawlers()["Crawlers"] == []
    groups = client("athena").list_work_groups()["WorkGroups"]
    assert [g["Name"] for g in groups] == ["primary"]
    assert plan_destroy(resources).steps == []


def test_a_running_crawl_is_stopped_before_the_crawler_is_deleted(applied: Context) -> None:
    glue, name = client("glue"), applied.names.crawler
    glue.start_crawler(Name=name)
    assert glue.get_crawler(Name=name)["Crawler"]["State"] == "RUNNING"
    applied.aws.log.reset()
    assert execute(plan_destroy(analytics.resources(applied)[1:2])).ok
    writes = applied.aws.log.writes()
    assert writes.index("glue:StopCrawler") < writes.index("glue:DeleteCrawler")
    assert glue.get_crawlers()["Crawlers"] == []
