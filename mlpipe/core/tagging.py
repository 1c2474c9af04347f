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

from mlpipe.core.diff import RUN_TAG
from mlpipe.core.errors import error_code


@dataclass(frozen=True)
class Tagging:
    read: str  # the operation that lists the tags
    tag: str  # the operation that adds or overwrites tags
    untag: str  # the operation that removes tag keys; "": `tag` replaces the whole set (S3)
    resource: str  # the parameter naming the resource (an ARN, a name, an id)
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


TAGGING: Mapping[str, Tagging] = {
    "s3": Tagging("get_bucket_tagging", "put_bucket_tagging", "", "Bucket", answer=("TagSet",)),
    "iam": Tagging("list_role_tags", "tag_role", "untag_role", "RoleName"),
    "lambda": Tagging("list_tags", "tag_resource", "untag_resource", "Resource", key=None),
    "kms": Tagging(
        "list_resource_tags",
        "tag_resource",
        "untag_resource",
        "KeyId",
        key="TagKey",
        value="TagValue",
    ),
    "ec2": Tagging("describe_tags", "create_tags", "delete_tags", "Resources", keys="Tags"),
    "ssm": Tagging(
        "list_tags_for_resource",
        "add_tags_to_resource",
        "remove_tags_from_resource",
        "ResourceId",
        answer=("TagList",),
        fixed=(("ResourceType", "Parameter"),),
    ),
    "dynamodb": Tagging("list_tags_of_resource", "tag_resource", "untag_resource", "ResourceArn"),
    "kinesis": Tagging(
        "list_tags_for_stream",
        "add_tags_to_stream",
        "remove_tags_from_stream",
        "StreamName",
        written_as_map=True,
    ),
    "sqs": Tagging("list_queue_tags", "tag_queue", "untag_queue", "QueueUrl", key=None),
    "apigateway": Tagging(
        "get_tags",
        "tag_resource",
        "untag_resource",
        "resourceArn",
        answer=("tags",),
        tags="tags",
        keys="tagKeys",
        key=None,
    ),
    "sagemaker": Tagging("list_tags", "add_tags", "delete_tags", "ResourceArn"),
    "stepfunctions": Tagging(
        "list_tags_for_resource",
        "tag_resource",
        "untag_resource",
        "resourceArn",
        answer=("tags",),
        tags="tags",
        keys="tagKeys",
        key="key",
        value="value",
    ),
    "glue": Tagging(
        "get_tags",
        "tag_resource",
        "untag_resource",
        "ResourceArn",
        tags="TagsToAdd",
        keys="TagsToRemove",
        key=None,
    ),
    "athena": Tagging("list_tags_for_resource", "tag_resource", "untag_resource", "ResourceARN"),
    "cloudwatch": Tagging(
        "list_tags_for_resource", "tag_resource", "untag_resource", "ResourceARN"
    ),
    "logs": Tagging(
        "list_tags_for_resource",
        "tag_resource",
        "untag_resource",
        "resourceArn",
        answer=("tags",),
        tags="tags",
        keys="tagKeys",
        key=None,
    ),
    "sns": Tagging("list_tags_for_resource", "tag_resource", "untag_resource", "ResourceArn"),
    "events": Tagging("list_tags_for_resource", "tag_resource", "untag_resource", "ResourceARN"),
    "batch": Tagging(
        "list_tags_for_resource",
        "tag_resource",
        "untag_resource",
        "resourceArn",
        answer=("tags",),
        tags="tags",
        keys="tagKeys",
        key=None,
    ),
    "ecr": Tagging(
        "list_tags_for_resource",
        "tag_resource",
        "untag_resource",
        "resourceArn",
        answer=("tags",),
        tags="tags",
        keys="tagKeys",
    ),
    "wafv2": Tagging(
        "list_tags_for_resource",
        "tag_resource",
        "untag_resource",
        "ResourceARN",
        answer=("TagInfoForResource", "TagList"),
    ),
    "application-autoscaling": Tagging(
        "list_tags_for_resource", "tag_resource", "untag_resource", "ResourceARN", key=None
    ),
}


def _service(client: Any) -> Tagging:
    return TAGGING[client.meta.service_model.service_name]


def read_tags(client: Any, resource: str) -> dict[str, str]:
    """The live tags of `resource` (its ARN, name or id, as the service names it); none when
    the service says the resource has no tag set (S3)."""
    tagging = _service(client)
    if tagging.read == "describe_tags":  # EC2 reads tags through a filter
        pages = client.get_paginator("describe_tags").paginate(
            Filters=[{"Name": "resource-id", "Values": [resource]}]
        )
        return {t["Key"]: t["Value"] for page in pages for t in page["Tags"]}
    try:
        answer = tagging.call(client, tagging.read, resource)
    except ClientError as exc:
        if error_code(exc) == "NoSuchTagSet":
            return {}
        raise
    return tagging.decode(answer)


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
