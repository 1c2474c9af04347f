"""Parameter Store seeds on moto: apply writes a value once and then keeps only its description
and tags (synced by the base resource); the model commands own the value."""

from __future__ import annotations

import boto3

from mlpipe.core.context import Context
from mlpipe.core.executor import execute
from mlpipe.core.plan import Action, plan_apply, plan_destroy
from mlpipe.resources import ssm
from tests.support import four_step

REGION = "us-east-1"


def seeds(ctx: Context) -> list[ssm.Parameter]:
    return [r for r in ssm.resources(ctx) if type(r) is ssm.Parameter]


def tags(name: str) -> dict[str, str]:
    listed = boto3.client("ssm", region_name=REGION).list_tags_for_resource(
        ResourceType="Parameter", ResourceId=name
    )["TagList"]
    return {t["Key"]: t["Value"] for t in listed}


def test_four_step_over_the_seeds(ctx: Context) -> None:
    four_step(ctx, seeds(ctx))


def test_tags_drift_back_and_the_value_the_commands_wrote_stays(ctx: Context) -> None:
    four_step(ctx, seeds(ctx))
    client, name = boto3.client("ssm", region_name=REGION), ctx.names.active_version_param
    client.put_parameter(Name=name, Value="v2.0.0", Type="String", Overwrite=True)
    client.add_tags_to_resource(
        ResourceType="Parameter", ResourceId=name, Tags=[{"Key": "stray", "Value": "x"}]
    )
    client.remove_tags_from_resource(
        ResourceType="Parameter", ResourceId=name, TagKeys=["CostCenter"]
    )

    plan = plan_apply(seeds(ctx))
    assert {s.key: s.diff.paths() for s in plan.changes} == {"ssm:active-version": ["Tags"]}
    ctx.aws.log.reset()
    assert execute(plan).ok

    assert ctx.aws.log.writes() == [
        "ssm:RemoveTagsFromResource",
        "ssm:AddTagsToResource",
    ]
    wanted = ctx.tags_for("ssm:active-version")
    assert {k: v for k, v in tags(name).items() if k in wanted or k == "stray"} == wanted
    assert client.get_parameter(Name=name)["Parameter"]["Value"] == "v2.0.0"
    assert not plan_apply(seeds(ctx)).changes


def test_destroy_deletes_the_seeds_and_a_second_delete_is_done(ctx: Context) -> None:
    resources = seeds(ctx)
    four_step(ctx, resources)
    plan = plan_destroy(resources)
    assert {s.action for s in plan.steps} == {Action.DELETE}
    assert execute(plan).ok
    for step in plan.steps:
        step.resource.delete(step.observed)  # already gone: nothing to do, no error
    assert not plan_apply(resources).steps[0].observed
