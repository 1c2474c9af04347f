"""EC2's client tokens in the embedded AWS: a create repeated with the same ``ClientToken``
returns what the first one made instead of making another (moto ignores the token).

https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-idempotency.html: "If you repeat a
request with the same client token and the same parameters, the request succeeds and returns
the result of the original request". Covered: ``CreateRouteTable``, ``CreateVpcEndpoint`` and
``CreateFlowLogs``, the token-taking creates mlpipe makes.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from moto.core.responses import ActionResult
from moto.ec2.models import EC2Backend
from moto.ec2.responses.flow_logs import FlowLogs
from moto.ec2.responses.route_tables import RouteTables

from mlpipe.local.moto_ext import install_declared, wrapper_of

# Per EC2 backend (one per account and region): client token -> route table id.
_route_tables: weakref.WeakKeyDictionary[Any, dict[str, str]] = weakref.WeakKeyDictionary()
# Per EC2 backend: client token -> the flow log ids its create made.
_flow_logs: weakref.WeakKeyDictionary[Any, dict[str, list[str]]] = weakref.WeakKeyDictionary()


@wrapper_of(RouteTables, "create_route_table")
def _create_route_table(original: Callable[..., Any]) -> Callable[..., Any]:
    def create(self: RouteTables) -> Any:
        token, backend = self._get_param("ClientToken"), self.ec2_backend
        made = _route_tables.setdefault(backend, {})
        if token and made.get(token) in backend.route_tables:
            return ActionResult({"RouteTable": backend.route_tables[made[token]]})
        before = set(backend.route_tables)
        result = original(self)
        created = set(backend.route_tables) - before
        if token and created:
            made[token] = created.pop()
        return result

    return create


@wrapper_of(FlowLogs, "create_flow_logs")
def _create_flow_logs(original: Callable[..., Any]) -> Callable[..., Any]:
    def create(self: FlowLogs) -> Any:
        token, backend = self._get_param("ClientToken"), self.ec2_backend
        made = _flow_logs.setdefault(backend, {})
        if token and made.get(token) and set(made[token]) <= set(backend.flow_logs):
            return ActionResult({"FlowLogIds": made[token], "Unsuccessful": []})
        before = set(backend.flow_logs)
        result = original(self)
        if token:
            made[token] = sorted(set(backend.flow_logs) - before)
        return result

    return create


@wrapper_of(EC2Backend, "create_vpc_endpoint")
def _create_vpc_endpoint(original: Callable[..., Any]) -> Callable[..., Any]:
    def create(self: EC2Backend, *args: Any, **kwargs: Any) -> Any:
        token = kwargs.get("client_token")
        if token:
            for endpoint in self.vpc_end_points.values():
                if endpoint.client_token == token and endpoint.state != "deleted":
                    return endpoint
        return original(self, *args, **kwargs)

    return create


def install() -> None:
    install_declared(__name__)
