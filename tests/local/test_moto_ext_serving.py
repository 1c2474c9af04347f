"""The moto extensions for serving under mock_aws: Lambda configuration updates, Kinesis
CreateStream tags, API Gateway cache key parameters and tagging."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import boto3
import pytest
from localaws_testing import ACCOUNT, REGION

from mlpipe.local.moto_ext import install_extensions, uninstall_extensions

pytestmark = pytest.mark.usefixtures("mocked")


def package() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return event\n")
    return buffer.getvalue()


@pytest.fixture
def function() -> str:
    role = boto3.client("iam", region_name=REGION).create_role(
        RoleName="fn-role",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ]
            }
        ),
    )["Role"]["Arn"]
    boto3.client("lambda", region_name=REGION).create_function(
        FunctionName="fn",
        Runtime="python3.11",
        Role=role,
        Handler="handler.handler",
        Code={"ZipFile": package()},
    )
    return "fn"


def lam() -> Any:
    return boto3.client("lambda", region_name=REGION)


def test_update_function_configuration_sets_tracing_and_kms_key(function: str) -> None:
    key = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    answer = lam().update_function_configuration(
        FunctionName=function, TracingConfig={"Mode": "Active"}, KMSKeyArn=key, MemorySize=256
    )
    assert answer["TracingConfig"] == {"Mode": "Active"} and answer["KMSKeyArn"] == key
    live = lam().get_function_configuration(FunctionName=function)
    assert live["TracingConfig"] == {"Mode": "Active"}
    assert live["KMSKeyArn"] == key and live["MemorySize"] == 256

    lam().update_function_configuration(FunctionName=function, KMSKeyArn="")
    assert "KMSKeyArn" not in lam().get_function_configuration(FunctionName=function)


def test_plain_moto_ignores_tracing_on_update(function: str) -> None:
    uninstall_extensions()
    try:
        lam().update_function_configuration(FunctionName=function, TracingConfig={"Mode": "Active"})
        live = lam().get_function_configuration(FunctionName=function)
        assert live["TracingConfig"] == {"Mode": "PassThrough"}
    finally:
        install_extensions()


def test_create_stream_applies_its_tags() -> None:
    kinesis = boto3.client("kinesis", region_name=REGION)
    kinesis.create_stream(StreamName="s", ShardCount=1, Tags={"team": "ml", "env": "prod"})
    tags = kinesis.list_tags_for_stream(StreamName="s")["Tags"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("env", "prod"), ("team", "ml")]


def test_put_integration_keeps_cache_key_parameters() -> None:
    apigw = boto3.client("apigateway", region_name=REGION)
    api = apigw.create_rest_api(name="a")
    resource = apigw.create_resource(
        restApiId=api["id"], parentId=api["rootResourceId"], pathPart="p"
    )
    header = "method.request.header.X-Key"
    apigw.put_method(
        restApiId=api["id"],
        resourceId=resource["id"],
        httpMethod="POST",
        authorizationType="NONE",
        requestParameters={header: False},
    )
    answer = apigw.put_integration(
        restApiId=api["id"],
        resourceId=resource["id"],
        httpMethod="POST",
        type="AWS_PROXY",
        integrationHttpMethod="POST",
        uri=f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/"
        f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:fn/invocations",
        cacheKeyParameters=[header],
    )
    assert answer["cacheKeyParameters"] == [header]
    live = apigw.get_integration(restApiId=api["id"], resourceId=resource["id"], httpMethod="POST")
    assert live["cacheKeyParameters"] == [header]


@pytest.mark.parametrize("kind", ["restapis", "usageplans", "apikeys"])
def test_api_gateway_tags_rest_apis_usage_plans_and_keys(kind: str) -> None:
    apigw = boto3.client("apigateway", region_name=REGION)
    create = {
        "restapis": lambda: apigw.create_rest_api(name="a", tags={"keep": "1", "drop": "2"}),
        "usageplans": lambda: apigw.create_usage_plan(name="u", tags={"keep": "1", "drop": "2"}),
        "apikeys": lambda: apigw.create_api_key(name="k", tags={"keep": "1", "drop": "2"}),
    }
    arn = f"arn:aws:apigateway:{REGION}::/{kind}/{create[kind]()['id']}"
    apigw.tag_resource(resourceArn=arn, tags={"added": "3"})
    apigw.untag_resource(resourceArn=arn, tagKeys=["drop"])
    assert apigw.get_tags(resourceArn=arn)["tags"] == {"keep": "1", "added": "3"}


def test_stage_tagging_is_still_moto_s_own() -> None:
    apigw = boto3.client("apigateway", region_name=REGION)
    api = apigw.create_rest_api(name="a")
    apigw.put_method(
        restApiId=api["id"],
        resourceId=api["rootResourceId"],
        httpMethod="GET",
        authorizationType="NONE",
    )
    apigw.put_integration(
        restApiId=api["id"], resourceId=api["rootResourceId"], httpMethod="GET", type="MOCK"
    )
    deployment = apigw.create_deployment(restApiId=api["id"])
    apigw.create_stage(
        restApiId=api["id"], stageName="s", deploymentId=deployment["id"], tags={"a": "1"}
    )
    arn = f"arn:aws:apigateway:{REGION}::/restapis/{api['id']}/stages/s"
    apigw.tag_resource(resourceArn=arn, tags={"b": "2"})
    assert apigw.get_tags(resourceArn=arn)["tags"] == {"a": "1", "b": "2"}


def test_kinesis_records_wait_for_the_stream_runtime(function: str) -> None:
    kinesis = boto3.client("kinesis", region_name=REGION)
    kinesis.create_stream(StreamName="records", ShardCount=1)
    arn = kinesis.describe_stream_summary(StreamName="records")["StreamDescriptionSummary"][
        "StreamARN"
    ]
    lam().create_event_source_mapping(
        EventSourceArn=arn, FunctionName=function, StartingPosition="LATEST"
    )
    kinesis.put_record(StreamName="records", Data=b"{}", PartitionKey="k")
    # moto would have run the function (and written its log stream) on PutRecord.
    logs = boto3.client("logs", region_name=REGION)
    groups = logs.describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{function}")["logGroups"]
    assert groups == []
