"""KMS key, buckets, predictions table, registry parameters and IAM roles on moto."""

from __future__ import annotations

import json

import boto3
import pytest

from mlpipe.core.context import Context
from mlpipe.core.executor import Report, execute
from mlpipe.core.plan import Action, plan_apply, plan_destroy
from mlpipe.resources import artifacts, dynamodb, iam, kms, s3, ssm
from tests.support import Shared, build_once, converge, four_step

REGION = "us-east-1"


def foundation(ctx: Context) -> list:
    return [r for m in (kms, s3, artifacts, dynamodb, ssm, iam) for r in m.resources(ctx)]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Shared[Report]:
    return build_once(tmp_path_factory.mktemp("built"), lambda ctx: converge(foundation(ctx)))


@pytest.fixture
def applied(ctx: Context, built: Shared[Report]) -> Context:
    """The stack applied: a copy of the account one converge built for the module."""
    built.restore()
    return ctx


def test_four_step(ctx: Context) -> None:
    """The idempotency check, once: the other tests start from `applied` (one converge)."""
    four_step(ctx, foundation(ctx))


def key_arn(ctx: Context) -> str:
    return boto3.client("kms", region_name=REGION).describe_key(KeyId=ctx.names.kms_alias)[
        "KeyMetadata"
    ]["Arn"]


def test_kms_key_rotates_and_lets_logs_use_it(applied: Context) -> None:
    client = boto3.client("kms", region_name=REGION)
    key_id = client.describe_key(KeyId=applied.names.kms_alias)["KeyMetadata"]["KeyId"]
    assert client.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"]
    doc = json.loads(client.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"])
    services = {svc for s in doc["Statement"] for svc in s["Principal"].get("Service", [])}
    assert {"logs.us-east-1.amazonaws.com", "cloudwatch.amazonaws.com"} <= services
    tags = {t["TagKey"]: t["TagValue"] for t in client.list_resource_tags(KeyId=key_id)["Tags"]}
    assert tags["mlpipe:pipeline"] == "ml-pipeline-prod" and tags["CostCenter"] == "ml-platform"


def test_buckets_are_versioned_encrypted_private_and_tls_only(applied: Context) -> None:
    client = boto3.client("s3", region_name=REGION)
    arn = key_arn(applied)
    for bucket in (applied.names.model_bucket, applied.names.data_bucket):
        assert client.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
        rule = client.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"][
            "Rules"
        ][0]
        assert rule["ApplyServerSideEncryptionByDefault"] == {
            "SSEAlgorithm": "aws:kms",
            "KMSMasterKeyID": arn,
        }
        block = client.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        assert all(block.values()) and len(block) == 4
        statement = json.loads(client.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"][0]
        assert statement["Effect"] == "Deny"
        assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    models = client.get_bucket_lifecycle_configuration(Bucket=applied.names.model_bucket)["Rules"]
    assert models[0]["NoncurrentVersionExpiration"]["NoncurrentDays"] == 90
    data = client.get_bucket_lifecycle_configuration(Bucket=applied.names.data_bucket)["Rules"]
    raw = next(r for r in data if r["ID"] == "expire-raw")
    assert raw["Filter"]["Prefix"] == "raw/" and raw["Expiration"]["Days"] == 30


def test_table_has_ttl_pitr_cmk_stream_and_gsi(applied: Context) -> None:
    client = boto3.client("dynamodb", region_name=REGION)
    name = applied.names.predictions_table
    table = client.describe_table(TableName=name)["Table"]
    assert table["KeySchema"] == [
        {"AttributeName": "predictionId", "KeyType": "HASH"},
        {"AttributeName": "timestamp", "KeyType": "RANGE"},
    ]
    assert {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]} == {
        "predictionId": "S",
        "timestamp": "N",
        "modelVersion": "S",
    }
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert table["SSEDescription"]["SSEType"] == "KMS"
    assert table["SSEDescription"]["KMSMasterKeyArn"] == key_arn(applied)
    assert table["StreamSpecification"] == {
        "StreamEnabled": True,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    (gsi,) = table["GlobalSecondaryIndexes"]
    assert gsi["IndexName"] == "ModelVersionIndex"
    assert [k["AttributeName"] for k in gsi["KeySchema"]] == ["modelVersion", "timestamp"]
    ttl = client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expirationTime"}
    backups = client.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
    assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"
    assert table["DeletionProtectionEnabled"] is True


def test_registry_parameters_are_seeded_from_the_spec(applied: Context) -> None:
    client = boto3.client("ssm", region_name=REGION)
    names = applied.names
    assert client.get_parameter(Name=names.active_version_param)["Parameter"]["Value"] == "v1.0.0"
    state = json.loads(client.get_parameter(Name=names.deployment_param)["Parameter"]["Value"])
    assert state["variants"] == [
        {"name": "ModelA", "version": "v1.0.0", "weight": 80},
        {"name": "ModelB", "version": "v2.0.0", "weight": 20},
    ]
    meta = json.loads(
        client.get_parameter(Name=names.metadata_param("v2.0.0"))["Parameter"]["Value"]
    )
    # Registered from the spec's artifact, uploaded by content.
    assert (
        meta["s3Path"] == f"s3://{names.model_bucket}/models/sha256/{meta['sha256']}/model.tar.gz"
    )
    assert meta["performanceBaseline"] == {"accuracy": 0.96, "latency": 110}


def test_apply_never_overwrites_an_operated_value(applied: Context) -> None:
    client = boto3.client("ssm", region_name=REGION)
    name = applied.names.active_version_param
    client.put_parameter(Name=name, Value="v2.0.0", Type="String", Overwrite=True)
    assert not plan_apply(foundation(applied)).changes
    assert client.get_parameter(Name=name)["Parameter"]["Value"] == "v2.0.0"


def test_roles_are_scoped_to_the_pipelines_arns(applied: Context) -> None:
    client = boto3.client("iam", region_name=REGION)
    names = applied.names

    def statements(purpose: str) -> dict[str, dict]:
        doc = client.get_role_policy(RoleName=names.role(purpose), PolicyName="least-privilege")
        return {s["Sid"]: s for s in doc["PolicyDocument"]["Statement"]}

    pre = statements("preprocess")
    assert pre["InvokeEndpoint"]["Action"] == ["sagemaker:InvokeEndpoint"]
    assert pre["InvokeEndpoint"]["Resource"] == [
        f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{names.endpoint}"
    ]
    assert pre["WritePredictions"]["Resource"] == [
        f"arn:aws:dynamodb:us-east-1:123456789012:table/{names.predictions_table}"
    ]
    assert pre["UseKey"]["Resource"] == [key_arn(applied)]
    events = statements("events")
    assert events["StartWorkflow"]["Action"] == ["states:StartExecution"]
    assert events["StartWorkflow"]["Resource"] == [
        f"arn:aws:states:us-east-1:123456789012:stateMachine:{names.state_machine}"
    ]
    # Wildcard resources only for the actions AWS cannot scope.
    scoped_exceptions = {
        "ec2:CreateNetworkInterface",
        "ec2:DeleteNetworkInterface",
        "ec2:DescribeNetworkInterfaces",
        "ec2:AssignPrivateIpAddresses",
        "ec2:UnassignPrivateIpAddresses",
        "ec2:CreateNetworkInterfacePermission",
        "ec2:DeleteNetworkInterfacePermission",
        "ec2:DescribeDhcpOptions",
        "ec2:DescribeSecurityGroups",
        "ec2:DescribeSubnets",
        "ec2:DescribeVpcs",
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "xray:GetSamplingRules",
        "xray:GetSamplingTargets",
        "ecr:GetAuthorizationToken",
        "cloudwatch:PutMetricData",
        "batch:DescribeJobs",
    }
    for purpose in iam.ROLES:
        role = client.get_role(RoleName=names.role(purpose))["Role"]
        assert role["Path"] == names.role_path
        for statement in statements(purpose).values():
            if statement["Resource"] == "*" or "*" in statement["Resource"]:
                actions = set(statement["Action"])
                assert actions <= scoped_exceptions or all(
                    a.startswith("logs:") for a in actions
                ), (purpose, statement)


def test_drift_is_shown_and_repaired(applied: Context) -> None:
    s3c = boto3.client("s3", region_name=REGION)
    ddb = boto3.client("dynamodb", region_name=REGION)
    iamc = boto3.client("iam", region_name=REGION)
    names = applied.names
    s3c.put_bucket_versioning(
        Bucket=names.data_bucket, VersioningConfiguration={"Status": "Suspended"}
    )
    ddb.update_continuous_backups(
        TableName=names.predictions_table,
        PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": False},
    )
    iamc.put_role_policy(
        RoleName=names.role("events"),
        PolicyName="backdoor",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
            }
        ),
    )
    iamc.tag_role(RoleName=names.role("events"), Tags=[{"Key": "stray", "Value": "1"}])
    resources = foundation(applied)
    plan = plan_apply(resources)
    drift = {s.key: s.diff.paths() for s in plan.changes}
    assert drift == {
        "s3:data": ["Versioning"],
        "dynamodb:predictions": ["PointInTimeRecovery"],
        "iam:events": ["Policies", "Tags"],
    }
    assert all(s.action is Action.UPDATE for s in plan.changes)
    applied.aws.log.reset()
    assert execute(plan).ok
    writes = applied.aws.log.writes()
    assert sorted(writes) == sorted(
        [
            "s3:PutBucketVersioning",
            "dynamodb:UpdateContinuousBackups",
            "iam:DeleteRolePolicy",
            "iam:UntagRole",
        ]
    )
    assert not plan_apply(resources).changes


def test_spec_change_updates_in_place(applied: Context, spec) -> None:
    ctx = applied
    storage = spec.storage.model_copy(
        update={
            "data_bucket": spec.storage.data_bucket.model_copy(update={"raw_expiration_days": 7})
        }
    )
    ctx.spec = spec.model_copy(update={"storage": storage, "tags": {**spec.tags, "Team": "ml"}})
    plan = plan_apply(foundation(ctx))
    changed = {s.key: s.diff.paths() for s in plan.changes}
    assert changed["s3:data"] == ["Lifecycle", "Tags"]
    assert all(paths == ["Tags"] for key, paths in changed.items() if key != "s3:data")
    # Every resource but the artifacts (S3 objects carry at most 10 tags: none are set) and
    # the registry, whose registrations the model commands write.
    unchanged = [s for s in plan.steps if s.resource.kind == "artifact" or s.key == "ssm:registry"]
    assert len(changed) == len(plan.steps) - len(unchanged)
    assert execute(plan).ok
    rules = boto3.client("s3", region_name=REGION).get_bucket_lifecycle_configuration(
        Bucket=ctx.names.data_bucket
    )["Rules"]
    assert next(r for r in rules if r["ID"] == "expire-raw")["Expiration"]["Days"] == 7
    assert not plan_apply(foundation(ctx)).changes


def test_destroy_removes_all_but_the_retained_model_bucket(applied: Context) -> None:
    s3c = boto3.client("s3", region_name=REGION)
    names = applied.names
    for bucket in (names.model_bucket, names.data_bucket):
        s3c.put_object(Bucket=bucket, Key="raw/x.json", Body=b"{}")
        s3c.put_object(Bucket=bucket, Key="raw/x.json", Body=b"{}")
    resources = foundation(applied)
    arn = key_arn(applied)
    plan = plan_destroy(resources)
    # The model bucket and its artifacts, the registry (version metadata) kept with it, the
    # protected table, and the key that encrypts them.
    artifacts = {"artifact:v1.0.0", "artifact:v2.0.0"}
    registry = {"ssm:registry", "ssm:metadata-v1.0.0", "ssm:metadata-v2.0.0"}
    retained = {"s3:models", *artifacts, *registry, "dynamodb:predictions"}
    assert {s.key for s in plan.steps if s.action is Action.NOOP} == {*retained, "kms:key"}
    assert execute(plan).ok
    buckets = {b["Name"] for b in s3c.list_buckets()["Buckets"]}
    assert buckets == {names.model_bucket}
    ssm = boto3.client("ssm", region_name=REGION)
    kept = {p["Name"] for p in ssm.describe_parameters()["Parameters"]}
    assert kept == {names.metadata_param("v1.0.0"), names.metadata_param("v2.0.0")}
    ddb = boto3.client("dynamodb", region_name=REGION)
    assert ddb.list_tables()["TableNames"] == [names.predictions_table]
    assert boto3.client("iam").list_roles(PathPrefix=names.role_path)["Roles"] == []
    kms = boto3.client("kms", region_name=REGION)
    assert kms.describe_key(KeyId=arn)["KeyMetadata"]["KeyState"] == "Enabled"
    assert execute(plan_destroy(resources, force=True)).ok
    assert s3c.list_buckets()["Buckets"] == []
    assert ssm.describe_parameters()["Parameters"] == []
    assert ddb.list_tables()["TableNames"] == []
    assert kms.describe_key(KeyId=arn)["KeyMetadata"]["KeyState"] == "PendingDeletion"


def test_the_key_goes_with_the_last_data_it_encrypts(applied: Context, spec) -> None:
    ctx = applied
    storage = spec.storage.model_copy(
        update={
            "model_bucket": spec.storage.model_bucket.model_copy(
                update={"retain_on_destroy": False}
            ),
            "predictions_table": spec.storage.predictions_table.model_copy(
                update={"deletion_protection": False}
            ),
        }
    )
    ctx.spec = spec.model_copy(update={"storage": storage})
    converge(foundation(ctx))  # the table's deletion protection goes
    plan = plan_destroy(foundation(ctx))
    assert not [s.key for s in plan.steps if s.action is Action.NOOP]


def test_destroy_never_touches_untagged_resources(ctx: Context) -> None:
    ddb = boto3.client("dynamodb", region_name=REGION)
    ddb.create_table(
        TableName=ctx.names.predictions_table,
        KeySchema=[{"AttributeName": "predictionId", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "predictionId", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    plan = plan_destroy(dynamodb.resources(ctx))
    assert [(s.action, s.notes) for s in plan.steps] == [
        (Action.NOOP, ["not tagged by mlpipe: left alone"])
    ]
    execute(plan)
    assert ddb.list_tables()["TableNames"] == [ctx.names.predictions_table]


def test_a_new_key_schema_forces_replacement(ctx: Context) -> None:
    ddb = boto3.client("dynamodb", region_name=REGION)
    ddb.create_table(
        TableName=ctx.names.predictions_table,
        KeySchema=[{"AttributeName": "predictionId", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "predictionId", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    plan = plan_apply([*kms.resources(ctx), *dynamodb.resources(ctx)])
    table = next(s for s in plan.steps if s.key == dynamodb.TABLE)
    assert table.action is Action.REPLACE
    assert "exists without mlpipe's ownership tags: apply adopts it" in table.notes


def test_weakened_defaults_are_said_at_plan_time(ctx: Context, spec) -> None:
    table = spec.storage.predictions_table.model_copy(update={"point_in_time_recovery": False})
    ctx.spec = spec.model_copy(
        update={
            "storage": spec.storage.model_copy(update={"predictions_table": table}),
            "kms": spec.kms.model_copy(update={"rotation": False}),
        }
    )
    plan = plan_apply([*kms.resources(ctx), *dynamodb.resources(ctx)])
    notes = [n for s in plan.steps for n in s.notes]
    assert any("FSBP DynamoDB.2" in n for n in notes)
    assert any("FSBP KMS.4" in n for n in notes)
