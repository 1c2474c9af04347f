"""The isolated VPC: subnets, route table, security groups and VPC endpoints on moto."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from mlpipe.core.context import Context
from mlpipe.core.executor import execute
from mlpipe.core.plan import Action, plan_apply, plan_destroy
from mlpipe.core.wait import TimedOut
from mlpipe.resources import network
from mlpipe.resources.network import (
    INTERFACE_ENDPOINTS,
    ROUTE_TABLE,
    SG_BATCH,
    SG_ENDPOINTS,
    SG_LAMBDA,
    VPC,
    permissions,
    rules,
    subnet_keys,
)
from mlpipe.spec import Spec
from tests.conftest import make_context
from tests.support import Shared, build_once, converge, four_step

REGION = "us-east-1"


def ec2() -> Any:
    return boto3.client("ec2", region_name=REGION)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Shared[dict[str, dict[str, Any]]]:
    return build_once(
        tmp_path_factory.mktemp("built"), lambda ctx: converge(network.resources(ctx)).outputs
    )


@pytest.fixture
def applied(ctx: Context, built: Shared[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """The stack applied: a copy of the account one converge built for the module."""
    return built.restore()


def test_four_step(ctx: Context) -> None:
    """The idempotency check, once: the other tests start from `applied` (one converge)."""
    four_step(ctx, network.resources(ctx))


def in_vpc(vpc_id: str) -> list[dict[str, Any]]:
    return [{"Name": "vpc-id", "Values": [vpc_id]}]


def endpoints(vpc_id: str) -> dict[str, dict[str, Any]]:
    found = ec2().describe_vpc_endpoints(Filters=in_vpc(vpc_id))["VpcEndpoints"]
    return {e["ServiceName"].split(f"{REGION}.", 1)[1]: e for e in found if e["State"] != "deleted"}


def group(group_id: str) -> dict[str, Any]:
    return ec2().describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]


def prefix_lists() -> dict[str, str]:
    found = ec2().describe_prefix_lists()["PrefixLists"]
    return {p["PrefixListName"].rsplit(".", 1)[1]: p["PrefixListId"] for p in found}


def with_endpoints(spec: Spec, services: list[str]) -> Spec:
    data = spec.model_dump()
    data["network"]["interface_endpoints"] = services
    return Spec.model_validate(data)


def test_vpc_has_dns_and_isolated_subnets_in_distinct_zones(
    ctx: Context, applied: dict[str, dict[str, Any]]
) -> None:
    client, vpc_id = ec2(), applied[VPC]["id"]
    for attribute in ("enableDnsSupport", "enableDnsHostnames"):
        answer = client.describe_vpc_attribute(VpcId=vpc_id, Attribute=attribute)
        assert answer[attribute[0].upper() + attribute[1:]]["Value"] is True
    subnets = client.describe_subnets(Filters=in_vpc(vpc_id))["Subnets"]
    assert len(subnets) == 2
    assert sorted(s["CidrBlock"] for s in subnets) == ["10.0.0.0/24", "10.0.1.0/24"]
    assert len({s["AvailabilityZone"] for s in subnets}) == 2
    assert not any(s["MapPublicIpOnLaunch"] for s in subnets)
    assert {applied[k]["az"] for k in subnet_keys(ctx.spec)} == {"us-east-1a", "us-east-1b"}
    assert client.describe_nat_gateways(Filter=in_vpc(vpc_id))["NatGateways"] == []
    gateways = client.describe_internet_gateways(
        Filters=[{"Name": "attachment.vpc-id", "Values": [vpc_id]}]
    )["InternetGateways"]
    assert gateways == []
    tags = {t["Key"]: t["Value"] for t in client.describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0]["Tags"]}
    assert tags["Name"] == ctx.names.vpc and tags["mlpipe:resource"] == VPC


def test_route_table_serves_every_subnet_with_gateway_endpoints_only(
    ctx: Context, applied: dict[str, dict[str, Any]]
) -> None:
    table = ec2().describe_route_tables(RouteTableIds=[applied[ROUTE_TABLE]["id"]])
    table = table["RouteTables"][0]
    associated = {a["SubnetId"] for a in table["Associations"] if "SubnetId" in a}
    assert associated == {applied[k]["id"] for k in subnet_keys(ctx.spec)}
    targets = {r["GatewayId"] for r in table["Routes"]}
    gateway_ids = {applied[f"ec2:endpoint-{s}"]["id"] for s in ("s3", "dynamodb")}
    assert targets == {"local"} | gateway_ids
    routed = {r.get("DestinationPrefixListId") for r in table["Routes"]} - {None}
    assert routed == {prefix_lists()["s3"], prefix_lists()["dynamodb"]}


def test_endpoints_gateway_and_interface_with_private_dns(
    ctx: Context, applied: dict[str, dict[str, Any]]
) -> None:
    live = endpoints(applied[VPC]["id"])
    assert set(live) == {"s3", "dynamodb", *ctx.spec.network.interface_endpoints}
    assert live["s3"]["VpcEndpointType"] == live["dynamodb"]["VpcEndpointType"] == "Gateway"
    assert live["s3"]["RouteTableIds"] == [applied[ROUTE_TABLE]["id"]]
    s3_policy = json.loads(live["s3"]["PolicyDocument"])
    resources = {r for s in s3_policy["Statement"] for r in s["Resource"]}
    expected = {
        f"arn:aws:s3:::{b}{suffix}"
        for b in (ctx.names.model_bucket, ctx.names.data_bucket)
        for suffix in ("", "/*")
    }
    if "ecr.dkr" in ctx.spec.network.interface_endpoints:  # ECR serves image layers from S3
        expected.add("arn:aws:s3:::prod-us-east-1-starport-layer-bucket/*")
    assert resources == expected
    table_policy = json.loads(live["dynamodb"]["PolicyDocument"])
    assert ctx.names.predictions_table in table_policy["Statement"][0]["Resource"][0]
    subnet_ids = sorted(applied[k]["id"] for k in subnet_keys(ctx.spec))
    for service in ctx.spec.network.interface_endpoints:
        endpoint = live[service]
        assert endpoint["VpcEndpointType"] == "Interface"
        assert endpoint["PrivateDnsEnabled"] is True
        assert sorted(endpoint["SubnetIds"]) == subnet_ids
        assert [g["GroupId"] for g in endpoint["Groups"]] == [applied[SG_ENDPOINTS]["id"]]
    names = {t["Value"] for t in live["sagemaker.runtime"]["Tags"] if t["Key"] == "Name"}
    assert names == {ctx.names.vpc_endpoint("sagemaker.runtime")}


def test_security_groups_allow_https_to_endpoints_only(
    ctx: Context, applied: dict[str, dict[str, Any]]
) -> None:
    https = {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443}
    lists = prefix_lists()
    for key in (SG_LAMBDA, SG_BATCH):
        live = group(applied[key]["id"])
        assert rules(live["IpPermissions"]) == []
        assert rules(live["IpPermissionsEgress"]) == rules(
            [
                {**https, "IpRanges": [{"CidrIp": "10.0.0.0/16"}]},
                {**https, "PrefixListIds": [{"PrefixListId": lists["s3"]}]},
                {**https, "PrefixListIds": [{"PrefixListId": lists["dynamodb"]}]},
            ]
        )
    endpoints_group = group(applied[SG_ENDPOINTS]["id"])
    assert endpoints_group["IpPermissionsEgress"] == []
    sources = {
        p["GroupId"] for r in endpoints_group["IpPermissions"] for p in r["UserIdGroupPairs"]
    }
    assert sources == {applied[SG_LAMBDA]["id"], applied[SG_BATCH]["id"]}
    assert {r["FromPort"] for r in endpoints_group["IpPermissions"]} == {443}


def test_rules_round_trip_between_flat_and_aws_shapes() -> None:
    live = [
        {
            "IpProtocol": "tcp",
            "FromPort": 443,
            "ToPort": 443,
            "IpRanges": [{"CidrIp": "10.0.0.0/16", "Description": "vpc"}],
            "PrefixListIds": [{"PrefixListId": "pl-1"}],
            "UserIdGroupPairs": [{"GroupId": "sg-1", "UserId": "123456789012"}],
        },
        {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}], "Ipv6Ranges": []},
    ]
    flat = rules(live)
    assert len(flat) == 4
    assert {"IpProtocol": "-1", "CidrIp": "0.0.0.0/0"} in flat
    assert rules(permissions(flat)) == flat


def test_drift_behind_mlpipe_is_planned_on_its_resource_and_repaired_in_place(
    ctx: Context, applied: dict[str, dict[str, Any]]
) -> None:
    """An allow-all egress rule, DNS hostnames off, public IPs on a subnet, an internet route,
    an interface endpoint moved to other subnets and groups and tagged by hand."""
    client, vpc_id = ec2(), applied[VPC]["id"]
    group_id = applied[SG_LAMBDA]["id"]
    client.authorize_security_group_egress(
        GroupId=group_id,
        IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
    )
    subnet_id = applied["ec2:subnet-0"]["id"]
    client.modify_vpc_attribute(VpcId=vpc_id, EnableDnsHostnames={"Value": False})
    client.modify_subnet_attribute(SubnetId=subnet_id, MapPublicIpOnLaunch={"Value": True})
    igw = client.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    client.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc_id)
    client.create_route(
        RouteTableId=applied[ROUTE_TABLE]["id"], DestinationCidrBlock="0.0.0.0/0", GatewayId=igw
    )
    ssm = endpoints(vpc_id)["ssm"]
    client.modify_vpc_endpoint(
        VpcEndpointId=ssm["VpcEndpointId"],
        RemoveSubnetIds=[applied["ec2:subnet-1"]["id"]],
        AddSecurityGroupIds=[applied[SG_LAMBDA]["id"]],
    )
    client.create_tags(Resources=[ssm["VpcEndpointId"]], Tags=[{"Key": "extra", "Value": "x"}])

    plan = plan_apply(network.resources(ctx))
    assert {s.key: sorted(s.diff.paths()) for s in plan.changes} == {
        SG_LAMBDA: ["Egress"],
        VPC: ["EnableDnsHostnames"],
        "ec2:subnet-0": ["MapPublicIpOnLaunch"],
        ROUTE_TABLE: ["ExtraRoutes"],
        INTERFACE_ENDPOINTS: [
            "Endpoints.ssm.SecurityGroupIds",
            "Endpoints.ssm.SubnetIds",
            "Endpoints.ssm.Tags",
        ],
    }
    assert {s.action for s in plan.changes} == {Action.UPDATE}
    assert execute(plan).ok

    egress = rules(group(group_id)["IpPermissionsEgress"])
    assert all(r["IpProtocol"] == "tcp" and r["FromPort"] == 443 for r in egress)
    assert len(egress) == 3
    answer = client.describe_vpc_attribute(VpcId=vpc_id, Attribute="enableDnsHostnames")
    assert answer["EnableDnsHostnames"]["Value"] is True
    assert not client.describe_subnets(SubnetIds=[subnet_id])["Subnets"][0]["MapPublicIpOnLaunch"]
    routes = client.describe_route_tables(RouteTableIds=[applied[ROUTE_TABLE]["id"]])
    assert "0.0.0.0/0" not in {
        r.get("DestinationCidrBlock") for r in routes["RouteTables"][0]["Routes"]
    }
    repaired = endpoints(vpc_id)["ssm"]
    assert repaired["VpcEndpointId"] == ssm["VpcEndpointId"]
    assert sorted(repaired["SubnetIds"]) == sorted(ssm["SubnetIds"])
    assert [g["GroupId"] for g in repaired["Groups"]] == [applied[SG_ENDPOINTS]["id"]]
    assert "extra" not in {t["Key"] for t in repaired["Tags"]}
    assert not plan_apply(network.resources(ctx)).changes


def test_interface_endpoint_list_changes_add_and_remove_endpoints(
    ctx: Context, applied: dict[str, dict[str, Any]]
) -> None:
    vpc_id = applied[VPC]["id"]
    current = ctx.spec.network.interface_endpoints
    # The ECR endpoints stay: without them the S3 gateway policy would change too.
    wanted = ["sagemaker.runtime", "ssm", "sts", *(s for s in current if s.startswith("ecr."))]
    changed = make_context(with_endpoints(ctx.spec, wanted))
    plan = plan_apply(network.resources(changed))
    [step] = plan.changes
    assert step.key == INTERFACE_ENDPOINTS and step.action is Action.UPDATE
    assert sorted(step.diff.paths()) == sorted(f"Endpoints.{s}" for s in set(current) ^ set(wanted))
    assert "Endpoints.sts" in step.diff.paths() and "Endpoints.logs" in step.diff.paths()
    converge(network.resources(changed))
    assert set(endpoints(vpc_id)) == {"s3", "dynamodb", *wanted}
    changed.aws.log.reset()
    assert not plan_apply(network.resources(changed)).changes
    assert changed.aws.log.writes() == []


def test_warns_when_handlers_cannot_reach_parameter_store(ctx: Context) -> None:
    changed = make_context(with_endpoints(ctx.spec, ["sagemaker.runtime", "logs"]))
    [endpoints_resource] = [r for r in network.resources(changed) if r.key == INTERFACE_ENDPOINTS]
    assert any("no ssm" in w for w in endpoints_resource.warnings())
    [default] = [r for r in network.resources(ctx) if r.key == INTERFACE_ENDPOINTS]
    assert default.warnings() == []


def test_subnets_fit_in_the_vpc_block(spec: Spec) -> None:
    data = spec.model_dump()
    data["network"] |= {"cidr": "10.0.0.0/24", "subnet_prefix_length": 24}
    with pytest.raises(ValueError, match="do not fit"):
        Spec.model_validate(data)


def test_tags_changed_behind_mlpipe_are_put_back_by_the_tag_sync_alone(
    ctx: Context, applied: dict[str, dict[str, Any]]
) -> None:
    client, vpc_id, group_id = ec2(), applied[VPC]["id"], applied[SG_LAMBDA]["id"]
    client.create_tags(Resources=[vpc_id], Tags=[{"Key": "Name", "Value": "renamed"}])
    client.create_tags(Resources=[group_id], Tags=[{"Key": "extra", "Value": "x"}])
    plan = plan_apply(network.resources(ctx))
    assert {s.key: s.diff.paths() for s in plan.changes} == {VPC: ["Tags"], SG_LAMBDA: ["Tags"]}
    ctx.aws.log.reset()
    assert execute(plan).ok
    assert sorted(ctx.aws.log.writes()) == ["ec2:CreateTags", "ec2:DeleteTags"]
    vpc = client.describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0]
    assert {t["Key"]: t["Value"] for t in vpc["Tags"]}["Name"] == ctx.names.vpc
    assert "extra" not in {t["Key"] for t in group(group_id)["Tags"]}
    assert not plan_apply(network.resources(ctx)).changes


def test_region_facts_are_read_once_by_the_resources_of_a_run(ctx: Context) -> None:
    ctx.aws.log.reset()
    plan_apply(network.resources(ctx))
    assert ctx.aws.log.count("ec2:DescribeAvailabilityZones") == 1
    assert ctx.aws.log.count("ec2:DescribePrefixLists") == 1
    plan_apply(network.resources(ctx))  # another run's resources read them again
    assert ctx.aws.log.count("ec2:DescribeAvailabilityZones") == 2


def test_a_delete_refused_for_a_lasting_dependency_fails_at_once_and_destroy_deletes_it_all(
    ctx: Context, applied: dict[str, dict[str, Any]]
) -> None:
    resources = network.resources(ctx)
    [vpc] = [r for r in resources if r.key == VPC]
    observed = vpc.read()
    assert observed is not None
    started = ctx.clock.now()
    # The subnets are still in the VPC: no Lambda network interface is being released, so the
    # DependencyViolation is not a transient error by name and is not waited out.
    with pytest.raises(ClientError, match="DependencyViolation"):
        vpc.delete(observed)
    assert ctx.clock.now() == started

    plan = plan_destroy(resources)
    assert {s.action for s in plan.steps} == {Action.DELETE}
    assert len(plan.steps) == len(resources)
    report = execute(plan)
    assert report.ok, {k: o.error for k, o in report.outcomes.items() if o.error}
    client = ec2()
    assert applied[VPC]["id"] not in {v["VpcId"] for v in client.describe_vpcs()["Vpcs"]}
    groups = client.describe_security_groups()["SecurityGroups"]
    assert [g["GroupName"] for g in groups if g["GroupName"] != "default"] == []
    assert endpoints(applied[VPC]["id"]) == {}
    assert all(r.read() is None for r in resources)
    vpc.delete(observed)  # a repeat of a delete already done: done


def test_a_new_vpc_is_waited_for_on_the_run_s_clock(ctx: Context) -> None:
    [vpc] = [r for r in network.resources(ctx) if r.key == VPC]
    started = ctx.clock.now()
    # A VPC EC2 does not list yet (just made, or never made) is waited for, within a bound.
    with pytest.raises(TimedOut, match="still not listed yet after 5s"):
        vpc._available("vpc-0123456789abcdef0")
    assert ctx.clock.now() - started == ctx.consistency_timeout == 5
