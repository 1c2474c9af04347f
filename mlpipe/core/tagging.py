"""Tags, said once per service: how to read, add and remove a resource's tags.

Every service spells tagging its own way (operation names, the parameter naming the resource,
tags as a map or as a list of `Key`/`Value` pairs, under other key names for KMS and Step
Functions). `TAGGING` is that knowledge as data; `read_tags` and `sync_tags` are the only code
that tags. A resource declares its service (`Resource.tagging`) and the base class keeps its
`Tags` in sync; no resource writes tag code of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from mlpipe.core.diff import RUN_TAG, without_aws_tags
from mlpipe.core.errors import error_code


@dataclass(frozen=True)
class Tagging:
    resource: str  # the parameter naming the resource (an ARN, a name, an id)
    read: str = "list_tags_for_resource"  # the operation that lists the tags
    tag: str = "tag_resource"  # the operation that adds or overwrites tags
    # The operation that removes tag keys; "": `tag` replaces the whole set (S3).
    untag: str = "untag_resource"
    answer: tuple[str, ...] = ("Tags",)  # where the read's answer holds the tags
    tags: str = "Tags"  # the parameter of `tag` carrying the tags
    keys: str = "TagKeys"  # the parameter of `untag` carrying the keys
    key: str | None = "Key"  # tags as a list of {key: k, value: v}; None: as a map
    value: str = "Value"
    written_as_map: bool = False  # read as a list, written as a map (Kinesis)
    fixed: tuple[tuple[str, str], ...] = ()  # parameters every call takes (SSM's type)

    def decode(self, answer: Mapping[str, Any]) -> dict[str, str]:
        found: Any = answer
        for part in self.answer:
            found = found.get(part) or {}
        if self.key is None:
            return dict(found)
        return {t[self.key]: t[self.value] for t in found}

    def encode(self, tags: Mapping[str, str]) -> Any:
        if self.key is None or self.written_as_map:
            return dict(tags)
        return [{self.key: k, self.value: v} for k, v in sorted(tags.items())]

    def encode_keys(self, keys: list[str]) -> Any:
        # EC2's DeleteTags takes the keys as tags without values.
        return [{"Key": k} for k in keys] if self.keys == self.tags else keys

    def call(self, client: Any, operation: str, resource: str, **params: Any) -> Any:
        name: Any = [resource] if self.resource == "Resources" else resource
        return getattr(client, operation)(**dict(self.fixed), **{self.resource: name}, **params)


def _lower(
    resource: str, read: str = "list_tags_for_resource", key: str | None = None, value: str = ""
) -> Tagging:
    """The newer APIs' form: lower-case parameter names, tags as a map (or under `key`)."""
    return Tagging(
        resource, read, answer=("tags",), tags="tags", keys="tagKeys", key=key, value=value
    )


TAGGING: Mapping[str, Tagging] = {
    "s3": Tagging("Bucket", "get_bucket_tagging", "put_bucket_tagging", "", answer=("TagSet",)),
    "iam": Tagging("RoleName", "list_role_tags", "tag_role", "untag_role"),
    "lambda": Tagging("Resource", "list_tags", key=None),
    "kms": Tagging("KeyId", "list_resource_tags", key="TagKey", value="TagValue"),
    "ec2": Tagging("Resources", "describe_tags", "create_tags", "delete_tags", keys="Tags"),
    "ssm": Tagging(
        "ResourceId",
        read="list_tags_for_resource",
        tag="add_tags_to_resource",
        untag="remove_tags_from_resource",
        answer=("TagList",),
        fixed=(("ResourceType", "Parameter"),),
    ),
    "dynamodb": Tagging("ResourceArn", "list_tags_of_resource"),
    "kinesis": Tagging(
        "StreamName",
        "list_tags_for_stream",
        "add_tags_to_stream",
        "remove_tags_from_stream",
        written_as_map=True,
    ),
    "sqs": Tagging("QueueUrl", "list_queue_tags", "tag_queue", "untag_queue", key=None),
    "apigateway": _lower("resourceArn", "get_tags"),
    "sagemaker": Tagging("ResourceArn", "list_tags", "add_tags", "delete_tags"),
    "stepfunctions": _lower("resourceArn", key="key", value="value"),
    "glue": Tagging("ResourceArn", "get_tags", tags="TagsToAdd", keys="TagsToRemove", key=None),
    "athena": Tagging("ResourceARN"),
    "cloudwatch": Tagging("ResourceARN"),
    "logs": _lower("resourceArn"),
    "sns": Tagging("ResourceArn"),
    "events": Tagging("ResourceARN"),
    "batch": _lower("resourceArn"),
    "ecr": _lower("resourceArn", key="Key", value="Value"),
    "wafv2": Tagging("ResourceARN", answer=("TagInfoForResource", "TagList")),
    "application-autoscaling": Tagging("ResourceARN", key=None),
}


def _service(client: Any) -> Tagging:
    return TAGGING[client.meta.service_model.service_name]


def read_tags(client: Any, resource: str) -> dict[str, str]:
    """The live tags of `resource` (its ARN, name or id, as the service names it); none when
    the service says the resource has no tag set (S3). AWS-reserved `aws:` tags (set by
    CloudFormation, for one) are left out: nobody may change them."""
    tagging = _service(client)
    if tagging.read == "describe_tags":  # EC2 reads tags through a filter
        pages = client.get_paginator("describe_tags").paginate(
            Filters=[{"Name": "resource-id", "Values": [resource]}]
        )
        return without_aws_tags({t["Key"]: t["Value"] for page in pages for t in page["Tags"]})
    try:
        answer = tagging.call(client, tagging.read, resource)
    except ClientError as exc:
        if error_code(exc) == "NoSuchTagSet":
            return {}
        raise
    return without_aws_tags(tagging.decode(answer))


def sync_tags(
    client: Any, resource: str, current: Mapping[str, str], desired: Mapping[str, str]
) -> None:
    """Make the live tags equal `desired` with the fewest calls: untag the stale keys, tag the
    changed ones. The run tag is set once at creation and never removed."""
    tagging = _service(client)
    if not tagging.untag:  # the whole set at once, the run tag kept
        kept = {RUN_TAG: current[RUN_TAG]} if RUN_TAG in current else {}
        whole = {"TagSet": tagging.encode({**desired, **kept})}
        tagging.call(client, tagging.tag, resource, Tagging=whole)
        return
    stale = sorted(set(current) - set(desired) - {RUN_TAG})
    if stale:
        tagging.call(client, tagging.untag, resource, **{tagging.keys: tagging.encode_keys(stale)})
    changed = {k: v for k, v in desired.items() if current.get(k) != v}
    if changed:
        tagging.call(client, tagging.tag, resource, **{tagging.tags: tagging.encode(changed)})
