"""API Gateway in the embedded AWS: ``PutIntegration`` keeps ``cacheKeyParameters``, and
tagging (``GetTags``, ``TagResource``, ``UntagResource``) covers REST APIs, usage plans and API
keys, not only stages."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from moto.apigateway.responses import APIGatewayResponse

from mlpipe.local.moto_ext import _wrap, install_declared, wrapper_of


def _tagged_api_resource(response: APIGatewayResponse) -> Any:
    """The REST API, usage plan or API key a tagging request names; None for anything else."""
    arn = unquote(response.path.split("/tags/", 1)[1])
    parts = arn.split("::", 1)[-1].strip("/").split("/")
    backend = response.backend
    lookups = {
        "restapis": backend.get_rest_api,
        "usageplans": backend.get_usage_plan,
        "apikeys": backend.get_api_key,
    }
    if len(parts) == 2 and parts[0] in lookups:
        return lookups[parts[0]](parts[1])
    return None


def _api_tags(original: Callable[..., Any], operation: str) -> Callable[..., Any]:
    """GetTags/TagResource/UntagResource on REST APIs, usage plans and API keys (moto: stages
    only)."""

    def handle(self: APIGatewayResponse) -> Any:
        resource = _tagged_api_resource(self)
        if resource is None:
            return original(self)
        tags = dict(resource.tags or {})
        if operation == "tag":
            tags.update(self._get_param("tags") or {})
        elif operation == "untag":
            for key in self.querystring.get("tagKeys") or []:
                tags.pop(key, None)
        resource.tags = tags
        return json.dumps({"tags": tags})

    return handle


@wrapper_of(APIGatewayResponse, "put_integration")
def _put_integration(original: Callable[..., Any]) -> Callable[..., Any]:
    """PutIntegration keeps ``cacheKeyParameters``."""

    def put(self: APIGatewayResponse) -> Any:
        status, headers, _ = original(self)
        _, _, api_id, _, resource_id, _, method = self.path.split("/")[:7]
        integration = self.backend.get_integration(api_id, resource_id, method)
        integration.cache_key_parameters = list(self._get_param("cacheKeyParameters") or [])
        return status, headers, json.dumps(integration.to_json())

    return put


def install() -> None:
    install_declared(__name__)
    _wrap(APIGatewayResponse, "get_tags", lambda f: _api_tags(f, "get"))
    _wrap(APIGatewayResponse, "tag_resource", lambda f: _api_tags(f, "tag"))
    _wrap(APIGatewayResponse, "untag_resource", lambda f: _api_tags(f, "untag"))
