"""The alert topic and the spec's e-mail subscription to it.

The topic is encrypted with the pipeline's key; its policy lets CloudWatch alarms, EventBridge
and the account publish, and refuses a publish without TLS.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from mlpipe.core.context import Context
from mlpipe.core.diff import policy, tags_to_list
from mlpipe.core.find import forget
from mlpipe.core.resource import AspectResource, Observed, Outputs, Refs, Resource
from mlpipe.core.tagging import read_tags
from mlpipe.naming import Arns
from mlpipe.resources.kms import KEY

TOPIC = "sns:alerts"
SUBSCRIPTION = "sns:alert-email"


class Topic(AspectResource):
    kind = "sns"
    tagging = "sns"
    attributes = ("DisplayName", "KmsMasterKeyId", "Policy")

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, "alerts", ctx.names.alert_topic, depends_on=(KEY,))

    @property
    def arn(self) -> str:
        return Arns(self.ctx).topic

    def read(self) -> Observed | None:
        found = self.find("sns", "get_topic_attributes", TopicArn=self.arn)
        if found is None:
            return None
        attributes, tags = found["Attributes"], self.live_tags(self.arn)
        state = {
            "DisplayName": attributes.get("DisplayName", ""),
            "KmsMasterKeyId": attributes.get("KmsMasterKeyId"),
            "Policy": policy(attributes.get("Policy")),
            "Tags": tags,
        }
        return Observed(state, {"arn": self.arn}, self.ctx.owns(tags))

    def desired(self, refs: Refs) -> dict[str, Any]:
        return {
            "DisplayName": f"mlpipe {self.ctx.names.pipeline_id} alerts",
            "KmsMasterKeyId": refs(KEY, "arn"),
            "Policy": policy(self._policy()),
            "Tags": self.tags,
        }

    def _policy(self) -> dict[str, Any]:
        aws, topic = self.ctx.aws, self.arn
        return {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "AlarmsAndEventsPublish",
                    "Effect": "Allow",
                    "Principal": {"Service": ["cloudwatch.amazonaws.com", "events.amazonaws.com"]},
                    "Action": "sns:Publish",
                    "Resource": topic,
                    "Condition": {"StringEquals": {"aws:SourceAccount": aws.account}},
                },
                {
                    # Principals of the account still need an IAM policy that allows it.
                    "Sid": "AccountPublishes",
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:{aws.partition}:iam::{aws.account}:root"},
                    "Action": "sns:Publish",
                    "Resource": topic,
                },
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "sns:Publish",
                    "Resource": topic,
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                },
            ],
        }

    @staticmethod
    def _value(attribute: str, value: Any) -> str:
        return json.dumps(value) if attribute == "Policy" else str(value)

    def create(self, desired: dict[str, Any]) -> Outputs:
        topic = self.client("sns").create_topic(
            Name=self.physical,
            Attributes={a: self._value(a, desired[a]) for a in self.attributes},
            Tags=tags_to_list(desired["Tags"]),
        )
        return {"arn": topic["TopicArn"]}

    def aspects(self) -> dict[str, Callable[[Any], None]]:
        return {attribute: self._setter(attribute) for attribute in self.attributes}

    def _setter(self, attribute: str) -> Callable[[Any], None]:
        def set_attribute(value: Any) -> None:
            self.client("sns").set_topic_attributes(
                TopicArn=self.arn,
                AttributeName=attribute,
                AttributeValue=self._value(attribute, value),
            )

        return set_attribute

    def delete(self, observed: Observed) -> None:
        forget(self.client("sns"), "delete_topic", TopicArn=self.arn)

    def warnings(self) -> list[str]:
        if self.ctx.spec.monitoring.alert_email is None:
            return ["no monitoring.alert_email: alarms notify a topic nobody is subscribed to"]
        return []


class EmailSubscription(Resource):
    """The spec's alert address on the topic.

    AWS lists a subscription that awaits its confirmation e-mail as `PendingConfirmation`: it
    counts as present, so apply never sends the confirmation request again. A subscription has
    no tags; it is mlpipe's when its topic is.
    """

    kind = "sns"
    replace_on = ("TopicArn", "Protocol", "Endpoint")

    def __init__(self, ctx: Context, email: str) -> None:
        super().__init__(ctx, "alert-email", email, depends_on=(TOPIC,))
        self.email = email

    def read(self) -> Observed | None:
        sns, topic = self.client("sns"), Arns(self.ctx).topic
        if self.find("sns", "get_topic_attributes", TopicArn=topic) is None:
            return None
        pages = sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic)
        found = next(
            (
                s
                for page in pages
                for s in page["Subscriptions"]
                if s["Protocol"] == "email" and s["Endpoint"].lower() == self.email.lower()
            ),
            None,
        )
        if found is None:
            return None
        state = {"TopicArn": topic, "Protocol": "email", "Endpoint": self.email}
        arn = found["SubscriptionArn"]
        outputs = {"arn": arn, "pending": arn == "PendingConfirmation"}
        return Observed(state, outputs, self.ctx.owns(read_tags(sns, topic)))

    def desired(self, refs: Refs) -> dict[str, Any]:
        return {"TopicArn": refs(TOPIC, "arn"), "Protocol": "email", "Endpoint": self.email}

    def create(self, desired: dict[str, Any]) -> Outputs:
        arn = self.client("sns").subscribe(
            TopicArn=desired["TopicArn"],
            Protocol=desired["Protocol"],
            Endpoint=desired["Endpoint"],
            ReturnSubscriptionArn=True,
        )["SubscriptionArn"]
        self.ctx.progress(self.key, f"confirmation e-mail sent to {self.email}")
        return {"arn": arn, "pending": True}

    def delete(self, observed: Observed) -> None:
        if observed.outputs.get("pending"):
            # Unconfirmed subscriptions cannot be removed; AWS drops them after three days.
            return
        forget(self.client("sns"), "unsubscribe", SubscriptionArn=observed.outputs["arn"])
