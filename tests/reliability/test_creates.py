"""Creates AWS does not make idempotent, under lost responses, crashes and races."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import boto3
import pytest

from mlpipe import resources
from mlpipe.core.clients import Aws, AwsTarget
from mlpipe.core.context import OWNER_TAG, RESOURCE_TAG, Context
from mlpipe.core.executor import execute
from mlpipe.core.plan import Action, plan_apply, plan_destroy
from mlpipe.local.faults import Rule, injected
from mlpipe.resources import kms, network
from mlpipe.resources.logs import LogGroup
from tests.resources.endpoint_support import FakeTime, fake_time
from tests.support import converge

REGION = "us-east-1"
# Every create whose retry could make a second resource, and what lists them.
NON_IDEMPOTENT = (
    "ec2:CreateVpc",
    "ec2:CreateSubnet",
    "ec2:CreateSecurityGroup",
    "ec2:CreateRouteTable",
    "ec2:CreateVpcEndpoint",
    "kms:CreateKey",
    "apigateway:CreateRestApi",
    "apigateway:CreateApiKey",
    "apigateway:CreateUsagePlan",
)


def client(service: str) -> Any:
    return boto3.client(service, region_name=REGION)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch, ctx: Context) -> FakeTime:
    return fake_time(monkeypatch, ctx)


def tagged_ec2(ctx: Context) -> dict[str, int]:
    """resource key → how many live EC2 resources carry it."""
    ec2 = client("ec2")
    found: dict[str, int] = {}
    owner = [{"Name": f"tag:{OWNER_TAG}", "Values": [ctx.names.pipeline_id]}]
    listings = [
        ec2.describe_vpcs(Filters=owner)["Vpcs"],
        ec2.describe_subnets(Filters=owner)["Subnets"],
        ec2.describe_security_groups(Filters=owner)["SecurityGroups"],
        ec2.describe_route_tables(Filters=owner)["RouteTables"],
        [
            e
            for e in ec2.describe_vpc_endpoints(Filters=owner)["VpcEndpoints"]
            if e["State"].lower() != "deleted"
        ],
    ]
    for item in (i for listing in listings for i in listing):
        key = next(t["Value"] for t in item["Tags"] if t["Key"] == RESOURCE_TAG)
        found[key] = found.get(key, 0) + 1
    return found


def live_keys(ctx: Context) -> list[str]:
    """The pipeline's KMS keys not scheduled for deletion."""
    kms_client = client("kms")
    found = []
    for key in kms_client.list_keys()["Keys"]:
        meta = kms_client.describe_key(KeyId=key["KeyId"])["KeyMetadata"]
        tags = kms_client.list_resource_tags(KeyId=key["KeyId"])["Tags"]
        mine = {"TagKey": OWNER_TAG, "TagValue": ctx.names.pipeline_id} in tags
        if mine and meta["KeyState"] != "PendingDeletion":
            found.append(key["KeyId"])
    return found


def named(operation: str, name: str) -> int:
    items = getattr(client("apigateway"), operation)(limit=500)["items"]
    return sum(1 for item in items if item["name"] == name)


def counts(ctx: Context) -> dict[str, int]:
    names = ctx.names
    return {
        **tagged_ec2(ctx),
        "kms keys": len(live_keys(ctx)),
        "rest apis": named("get_rest_apis", names.api),
        "api keys": named("get_api_keys", names.api_key),
        "usage plans": named("get_usage_plans", names.usage_plan),
    }


def one_of_each(ctx: Context) -> dict[str, int]:
    spec = ctx.spec
    expected = {key: 1 for key in (network.VPC, network.ROUTE_TABLE, network.SG_LAMBDA)}
    expected |= {network.SG_BATCH: 1, network.SG_ENDPOINTS: 1, network.SG_SAGEMAKER: 1}
    expected[network.DEFAULT_SG] = 1  # the VPC's own, tagged when its rules are removed
    expected |= {key: 1 for key in network.subnet_keys(spec)}
    expected |= {key: 1 for key in network.GATEWAY_ENDPOINTS.values()}
    expected[network.INTERFACE_ENDPOINTS] = len(spec.network.interface_endpoints)
    expected |= {"kms keys": 1, "rest apis": 1, "api keys": 1, "usage plans": 1}
    return expected


def test_lost_response_on_each_create_leaves_one_of_each(ctx: Context, clock: FakeTime) -> None:
    lost = [Rule(call, "lose") for call in NON_IDEMPOTENT]
    with injected(*lost) as faults:
        report = execute(plan_apply(resources.build(ctx)))
    assert faults.counts()["lose"] == len(NON_IDEMPOTENT)
    assert report.ok, {k: o.error for k, o in report.outcomes.items() if o.error}
    assert counts(ctx) == one_of_each(ctx)

    ctx.aws.log.reset()
    rerun = plan_apply(resources.build(ctx))
    assert [s.key for s in rerun.changes] == []
    execute(rerun)
    assert ctx.aws.log.writes() == []
    assert counts(ctx) == one_of_each(ctx)

    destroyed = execute(plan_destroy(resources.build(ctx), force=True))
    assert destroyed.ok, {k: o.error for k, o in destroyed.outcomes.items() if o.error}
    assert set(counts(ctx).values()) <= {0}
    pending = {"PendingDeletion"}
    left = [
        arn
        for arn in ctx.tagged()
        if not (
            ":kms:" in arn
            and client("kms").describe_key(KeyId=arn)["KeyMetadata"]["KeyState"] in pending
        )
    ]
    assert left == [], left


def test_extras_left_by_a_race_are_planned_as_deletes_and_removed(
    ctx: Context, clock: FakeTime
) -> None:
    net = network.resources(ctx)
    built = [*kms.resources(ctx), *net]
    converge(built)
    # A second apply racing the first made another VPC with a subnet, and another key.
    ec2 = client("ec2")
    vpc, subnet = net[0], net[1]
    other = ec2.create_vpc(CidrBlock="10.0.0.0/16", TagSpecifications=vpc.tag_specs(vpc.tags))[
        "Vpc"
    ]["VpcId"]
    ec2.create_subnet(
        VpcId=other,
        CidrBlock="10.0.0.0/24",
        TagSpecifications=subnet.tag_specs(subnet.tags),
    )
    client("kms").create_key(
        Tags=[{"TagKey": k, "TagValue": v} for k, v in ctx.tags_for(kms.KEY).items()]
    )
    assert counts(ctx)["kms keys"] == 2 and tagged_ec2(ctx)[network.VPC] == 2

    plan = plan_apply(built)
    extras = {s.key: s.action for s in plan.changes}
    assert extras == {
        "kms:key#extra-1": Action.DELETE,
        "ec2:vpc#extra-1": Action.DELETE,
        "ec2:subnet-0#extra-1": Action.DELETE,
    }
    report = execute(plan)
    assert report.ok, {k: o.error for k, o in report.outcomes.items() if o.error}
    assert tagged_ec2(ctx)[network.VPC] == 1 and tagged_ec2(ctx)["ec2:subnet-0"] == 1
    assert len(live_keys(ctx)) == 1
    assert plan_apply(built).changes == []


def test_refused_alias_leaves_a_key_the_rerun_adopts(ctx: Context) -> None:
    key = kms.resources(ctx)
    with injected(Rule("kms:CreateAlias", "refuse", code="AccessDeniedException")):
        report = execute(plan_apply(key))
    assert not report.ok
    orphan = live_keys(ctx)
    assert len(orphan) == 1

    plan = plan_apply(key)
    assert [(s.key, s.action, s.diff.paths()) for s in plan.changes] == [
        ("kms:key", Action.UPDATE, ["Alias"])
    ]
    assert execute(plan).ok
    assert live_keys(ctx) == orphan
    aliased = client("kms").describe_key(KeyId=ctx.names.kms_alias)["KeyMetadata"]["KeyId"]
    assert aliased == orphan[0]

    assert execute(plan_destroy(key, force=True)).ok  # kept without: it encrypts retained data
    assert live_keys(ctx) == []


def test_create_gives_up_on_a_refusal_that_made_nothing(ctx: Context) -> None:
    vpc = network.resources(ctx)[0]
    refused = Rule("ec2:CreateVpc", "refuse", code="VpcLimitExceeded", status=400)
    with injected(refused) as faults:
        report = execute(plan_apply([vpc]))
    assert report.outcomes[network.VPC].error.startswith("VpcLimitExceeded")
    assert faults.counts()["refuse"] == 1
    assert network.VPC not in tagged_ec2(ctx)


def test_create_retries_a_transient_error_that_made_nothing(ctx: Context) -> None:
    vpc = network.resources(ctx)[0]
    with injected(Rule("ec2:CreateVpc", "error", times=2)) as faults:
        assert execute(plan_apply([vpc])).ok
    assert faults.counts()["error"] == 2
    assert tagged_ec2(ctx) == {network.VPC: 1}


def test_lost_answers_to_half_the_writes_still_converge_in_one_apply(
    ctx: Context, clock: FakeTime
) -> None:
    """Creates idempotent by name, met by their own retry, adopt what the first attempt made."""
    lost = [Rule("*:Create*", "lose", None, rate=0.5), Rule("*:Put*", "lose", None, rate=0.5)]
    with injected(*lost, seed=5) as faults:  # one thread: the seed decides which answers go
        report = execute(plan_apply(resources.build(ctx)), parallelism=1)
    assert faults.counts()["lose"] >= 20
    assert report.ok, {k: o.error for k, o in report.outcomes.items() if o.error}
    assert counts(ctx) == one_of_each(ctx)
    assert plan_apply(resources.build(ctx)).changes == []


def test_a_create_whose_every_answer_is_lost_adopts_what_it_made(ctx: Context) -> None:
    """botocore gives up on a call whose answers are all lost: the create is looked for."""
    run = replace(ctx, aws=Aws(AwsTarget(region=REGION, max_attempts=2)))
    group = LogGroup(run, "flow-logs", run.names.flow_log_group, 30)
    built = [*kms.resources(run), group]
    with injected(Rule("logs:CreateLogGroup", "lose", None)) as faults:
        report = execute(plan_apply(built))
    assert faults.counts()["lose"] == 2
    assert report.ok, {k: o.error for k, o in report.outcomes.items() if o.error}
    observed = group.read()
    assert observed is not None and observed.owned
    assert observed.state["RetentionInDays"] == 30
    assert plan_apply(built).changes == []


def test_vpc_endpoints_whose_every_answer_is_lost_are_adopted_once(ctx: Context) -> None:
    built = [*kms.resources(ctx), *network.resources(ctx)]
    with injected(Rule("ec2:CreateVpcEndpoint", "lose", None)) as faults:
        report = execute(plan_apply(built))
    endpoints = len(network.GATEWAY_ENDPOINTS) + len(ctx.spec.network.interface_endpoints)
    assert faults.counts()["lose"] == endpoints
    assert report.ok, {k: o.error for k, o in report.outcomes.items() if o.error}
    live = {k: n for k, n in tagged_ec2(ctx).items() if "endpoint" in k}
    assert live == {k: n for k, n in one_of_each(ctx).items() if "endpoint" in k}
    assert plan_apply(built).changes == []
