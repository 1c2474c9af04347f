"""The pipeline key's alias: it outlives a key scheduled for deletion and moves to the new key."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError

from mlpipe.core.context import Context
from mlpipe.core.plan import Action, plan_apply
from mlpipe.resources import kms
from tests.support import converge

REGION = "us-east-1"


def test_the_alias_of_a_key_scheduled_for_deletion_moves_to_the_new_key(ctx: Context) -> None:
    client = boto3.client("kms", region_name=REGION)
    converge(kms.resources(ctx))
    old = client.describe_key(KeyId=ctx.names.kms_alias)["KeyMetadata"]["KeyId"]
    client.schedule_key_deletion(KeyId=old, PendingWindowInDays=7)
    # AWS keeps the alias, and refuses a second one of the same name by its code.
    with pytest.raises(ClientError) as refused:
        client.create_alias(AliasName=ctx.names.kms_alias, TargetKeyId=old)
    assert refused.value.response["Error"]["Code"] == "AlreadyExistsException"

    assert [s.action for s in plan_apply(kms.resources(ctx)).changes] == [Action.CREATE]
    converge(kms.resources(ctx))
    new = client.describe_key(KeyId=ctx.names.kms_alias)["KeyMetadata"]
    assert new["KeyId"] != old and new["KeyState"] == "Enabled"
