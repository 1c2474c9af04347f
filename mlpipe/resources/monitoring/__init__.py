"""Monitoring: the alert topic and its e-mail subscription (`topic`), the alarms (`alarms`, a
table of rules), the dashboard (`dashboard`), and what the alarms say now (`status`).

The endpoint, functions, API, stream, table and state machine are named by their derived names
and ARNs, so monitoring stands alone.
"""

from __future__ import annotations

from mlpipe.core.context import Context
from mlpipe.core.resource import Resource
from mlpipe.resources.monitoring.alarms import (
    MICROSECONDS_PER_MS,
    Alarm,
    AlarmRule,
    alarm_definition,
    alarm_rules,
)
from mlpipe.resources.monitoring.dashboard import DASHBOARD, Dashboard, dashboard_body
from mlpipe.resources.monitoring.status import alarm_states
from mlpipe.resources.monitoring.topic import SUBSCRIPTION, TOPIC, EmailSubscription, Topic

__all__ = [
    "DASHBOARD",
    "MICROSECONDS_PER_MS",
    "SUBSCRIPTION",
    "TOPIC",
    "Alarm",
    "AlarmRule",
    "Dashboard",
    "EmailSubscription",
    "Topic",
    "alarm_definition",
    "alarm_rules",
    "alarm_states",
    "dashboard_body",
    "resources",
]


def resources(ctx: Context) -> list[Resource]:
    found: list[Resource] = [Topic(ctx)]
    email = ctx.spec.monitoring.alert_email
    if email is not None:
        found.append(EmailSubscription(ctx, email))
    found.append(Dashboard(ctx))
    found += [Alarm(ctx, rule) for rule in alarm_rules(ctx)]
    return found
