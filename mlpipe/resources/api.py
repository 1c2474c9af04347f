"""The inference API: a REST API with `POST /predict` (Lambda proxy to the preprocess function),
its stage, and the account setting API Gateway needs to write execution logs.

Caching. API Gateway builds cache keys only from request parameters (path, query string,
headers), never from the body, so the features themselves cannot be the key. Clients send a
hash of the features in the header `api.cache.key_header` (default `X-Features-Hash`): the
method declares that header, the integration lists `method.request.header.<key_header>` in its
`cacheKeyParameters`, and the stage enables caching for `POST /predict` through a method
setting (API Gateway caches only GET methods unless a method setting says otherwise). Identical
requests then hit the cache. The preprocess handler recomputes the hash from the body and
refuses a request without the header or with one that does not match it, so the entry of the
empty key only ever holds that refusal and no answer is cached under another request's hash.

Deployments. A stage serves a snapshot (deployment) of the API's routes. The hash of the route
definition is written into the deployment's description; the stage is redeployed only when the
definition's hash differs from the one it serves, never on a no-op apply.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from mlpipe.core.context import Context
from mlpipe.core.diff import Diff
from mlpipe.core.find import forget
from mlpipe.core.resource import Observed, Outputs, Refs, Resource
from mlpipe.naming import Arns
from mlpipe.resources.apigateway import (
    Named,
    affected,
    find_named,
    pages,
    patches,
    replace,
    resource_arn,
)
from mlpipe.resources.iam import role_key
from mlpipe.resources.lambdas import PREPROCESS, function_arn, function_key
from mlpipe.resources.logs import LogGroup

API = "apigateway:api"
STAGE = "apigateway:stage"
EXECUTION_LOGS = "logs:execution-logs"
ACCOUNT = "apigateway:account"
LOGS_ROLE = "apigateway-logs"
ROUTE = "/predict"
METHOD = "POST"
# API Gateway's maximum integration timeout for REST APIs.
INTEGRATION_TIMEOUT_MS = 29_000
# What API Gateway answers while another change to the same API is in progress.
BUSY = ("apigateway-conflict", "apigateway-too-many-requests")

# Method setting fields mlpipe manages, and their paths in UpdateStage patch operations.
SETTING_PATHS = {
    "metricsEnabled": "metrics/enabled",
    "loggingLevel": "logging/loglevel",
    "dataTraceEnabled": "logging/dataTrace",
    "throttlingBurstLimit": "throttling/burstLimit",
    "throttlingRateLimit": "throttling/rateLimit",
    "cachingEnabled": "caching/enabled",
    "cacheTtlInSeconds": "caching/ttlInSeconds",
    "cacheDataEncrypted": "caching/dataEncrypted",
}
# Stage properties and their paths in UpdateStage patch operations.
STAGE_PATHS = {
    "CacheClusterEnabled": "/cacheClusterEnabled",
    "CacheClusterSize": "/cacheClusterSize",
    "TracingEnabled": "/tracingEnabled",
}
ALL_METHODS = "*/*"
PREDICT_METHOD = f"{ROUTE.lstrip('/')}/{METHOD}"
# Method and integration fields PutMethod and PutIntegration take as mlpipe writes them.
METHOD_FIELDS = ("authorizationType", "apiKeyRequired", "requestParameters")
INTEGRATION_FIELDS = ("type", "uri", "cacheKeyParameters", "timeoutInMillis")


def find_api(ctx: Context) -> dict[str, Any] | None:
    return find_named(ctx, "get_rest_apis", ctx.names.api)


def cache_key_parameter(ctx: Context) -> str:
    return f"method.request.header.{ctx.spec.api.cache.key_header}"


def definition(ctx: Context) -> dict[str, Any]:
    """The API's routes in API Gateway's shape; derived from the spec and names alone, so its
    hash is known at plan time."""
    auth = ctx.spec.api.auth
    aws = ctx.aws
    target = function_arn(ctx, PREPROCESS)
    key = cache_key_parameter(ctx)
    return {
        ROUTE: {
            METHOD: {
                "authorizationType": "AWS_IAM" if auth == "iam" else "NONE",
                "apiKeyRequired": auth == "api_key",
                "requestParameters": {key: False},
                "integration": {
                    "type": "AWS_PROXY",
                    "httpMethod": "POST",
                    "uri": (
                        f"arn:{aws.partition}:apigateway:{aws.region}:lambda:path/2015-03-31/"
                        f"functions/{target}/invocations"
                    ),
                    "cacheKeyParameters": [key],
                    "timeoutInMillis": INTEGRATION_TIMEOUT_MS,
                },
            }
        }
    }


def definition_hash(ctx: Context) -> str:
    text = json.dumps(definition(ctx), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- the REST API ----------------------------------------------------------------------------


class RestApi(Named):
    listing, creating, path = "get_rest_apis", "create_rest_api", "/restapis/{id}"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, "api", ctx.names.api, depends_on=(function_key(PREPROCESS),))

    def outputs(self, item: dict[str, Any]) -> Outputs:
        aws, api_id = self.ctx.aws, item["id"]
        return {
            **super().outputs(item),
            "root_id": item["rootResourceId"],
            "execution_arn": f"arn:{aws.partition}:execute-api:{aws.region}:{aws.account}:{api_id}",
            "url": f"https://{api_id}.execute-api.{aws.region}.amazonaws.com",
        }

    def _resource_ids(self, api_id: str) -> dict[str, str]:
        return {r["path"]: r["id"] for r in pages(self.ctx, "get_resources", restApiId=api_id)}

    def _read_method(self, api_id: str, resource_id: str | None) -> dict[str, Any] | None:
        if resource_id is None:
            return None
        method = self.find(
            "apigateway", "get_method", restApiId=api_id, resourceId=resource_id, httpMethod=METHOD
        )
        if method is None:
            return None
        integration = method.get("methodIntegration") or {}
        timeout = integration.get("timeoutInMillis")
        return {
            "authorizationType": method.get("authorizationType"),
            "apiKeyRequired": bool(method.get("apiKeyRequired")),
            "requestParameters": method.get("requestParameters") or {},
            "integration": {
                "type": integration.get("type"),
                "httpMethod": integration.get("httpMethod"),
                "uri": integration.get("uri"),
                "cacheKeyParameters": sorted(integration.get("cacheKeyParameters") or []),
                "timeoutInMillis": int(timeout) if timeout is not None else None,
            },
        }

    def state(self, item: dict[str, Any]) -> dict[str, Any]:
        resource_ids = self._resource_ids(item["id"])
        return {
            "Description": item.get("description", ""),
            "EndpointConfiguration": {
                "types": sorted((item.get("endpointConfiguration") or {}).get("types", []))
            },
            "ApiKeySource": item.get("apiKeySource"),
            "Routes": {ROUTE: {METHOD: self._read_method(item["id"], resource_ids.get(ROUTE))}},
        }

    def desired(self, refs: Refs) -> dict[str, Any]:
        return {
            "Description": f"mlpipe {self.ctx.names.pipeline_id}: online inference",
            "EndpointConfiguration": {"types": ["REGIONAL"]},
            "ApiKeySource": "HEADER",
            "Routes": definition(self.ctx),
            "Tags": self.tags,
        }

    def create(self, desired: dict[str, Any]) -> Outputs:
        api = self.create_named(
            desired,
            endpointConfiguration=desired["EndpointConfiguration"],
            apiKeySource=desired["ApiKeySource"],
        )
        outputs = self.outputs(api)
        for path, methods in desired["Routes"].items():
            for method, spec in methods.items():
                self._put_method(outputs, {}, path, method, spec)
        return outputs

    def _put_method(
        self,
        outputs: Outputs,
        resource_ids: dict[str, str],
        path: str,
        method: str,
        spec: dict[str, Any],
    ) -> None:
        """(Re)write one method and its integration. Only the API's definition changes: the
        stage keeps serving its deployment until it is redeployed."""
        apigw, api_id = self.client("apigateway"), outputs["id"]
        resource_id = resource_ids.get(path)
        if resource_id is None:
            resource_id = apigw.create_resource(
                restApiId=api_id, parentId=outputs["root_id"], pathPart=path.strip("/")
            )["id"]
        where = {"restApiId": api_id, "resourceId": resource_id, "httpMethod": method}
        if path in resource_ids:
            forget(apigw, "delete_method", **where)
        apigw.put_method(**where, **{f: spec[f] for f in METHOD_FIELDS})
        integration = spec["integration"]
        apigw.put_integration(
            **where,
            integrationHttpMethod=integration["httpMethod"],
            **{f: integration[f] for f in INTEGRATION_FIELDS},
        )

    def update(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> Outputs:
        apigw, outputs = self.client("apigateway"), observed.outputs
        ops = patches(
            desired, changes, {"Description": "/description", "ApiKeySource": "/apiKeySource"}
        )
        if changes.touches("EndpointConfiguration"):
            current = observed.state["EndpointConfiguration"]["types"]
            for old, new in zip(current, desired["EndpointConfiguration"]["types"], strict=False):
                ops.append(replace(f"/endpointConfiguration/types/{old}", new))
        if ops:
            apigw.update_rest_api(restApiId=outputs["id"], patchOperations=ops)
        if changes.touches("Routes"):
            resource_ids = self._resource_ids(outputs["id"])
            for path, methods in desired["Routes"].items():
                for method, spec in methods.items():
                    if affected(changes, f"Routes.{path}.{method}"):
                        self._put_method(outputs, resource_ids, path, method, spec)
        return outputs

    def delete(self, observed: Observed) -> None:
        forget(self.client("apigateway"), "delete_rest_api", restApiId=observed.outputs["id"])

    def warnings(self) -> list[str]:
        if self.ctx.spec.api.auth == "none":
            return [
                "api.auth is none: POST /predict is open to anyone who finds the URL "
                "(no IAM authorization, no API key, no usage plan)"
            ]
        return []


# --- the account's CloudWatch role ---------------------------------------------------------------


class ApiAccount(Resource):
    """API Gateway's account-wide CloudWatch role, needed for execution logging.

    The setting is shared by every API of the account and region: any role already set (and
    still existing) serves this pipeline too, so apply sets the pipeline's role only when none
    is usable, and destroy resets the setting only when it is the pipeline's role.
    """

    kind = "apigateway"

    def __init__(self, ctx: Context) -> None:
        super().__init__(
            ctx, "account", "API Gateway account settings", depends_on=(role_key(LOGS_ROLE),)
        )

    def _role_exists(self, arn: str) -> bool:
        return self.find("iam", "get_role", RoleName=arn.rsplit("/", 1)[-1]) is not None

    def read(self) -> Observed | None:
        arn = self.client("apigateway").get_account().get("cloudwatchRoleArn")
        if not arn:
            return None
        ours = Arns(self.ctx).role(LOGS_ROLE)
        usable = arn if arn == ours or self._role_exists(arn) else None
        return Observed({"CloudWatchRoleArn": usable}, {"role_arn": arn}, owned=arn == ours)

    def desired(self, refs: Refs) -> dict[str, Any]:
        return {"CloudWatchRoleArn": refs(role_key(LOGS_ROLE), "arn")}

    def diff(self, current: Mapping[str, Any], desired: Mapping[str, Any]) -> Diff:
        if current.get("CloudWatchRoleArn"):
            return Diff()
        return super().diff(current, desired)

    def _set(self, arn: str) -> None:
        # IAM may not yet let API Gateway assume a new role.
        self.ctx.eventually(
            lambda: self.client("apigateway").update_account(
                patchOperations=[replace("/cloudwatchRoleArn", arn)]
            ),
            "apigateway-account-role-not-ready",
        )

    def create(self, desired: dict[str, Any]) -> Outputs:
        self._set(desired["CloudWatchRoleArn"])
        return {"role_arn": desired["CloudWatchRoleArn"]}

    def update(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> Outputs:
        return self.create(desired)

    def delete(self, observed: Observed) -> None:
        self.client("apigateway").update_account(
            patchOperations=[replace("/cloudwatchRoleArn", "")]
        )


# --- the stage -------------------------------------------------------------------------------


class Stage(Resource):
    kind = "apigateway"
    tagging = "apigateway"
    replace_on = ("RestApiId",)

    def __init__(self, ctx: Context) -> None:
        super().__init__(
            ctx, "stage", ctx.spec.api.stage, depends_on=(API, ACCOUNT, EXECUTION_LOGS)
        )

    def _path(self, api_id: str) -> str:
        return f"/restapis/{api_id}/stages/{self.physical}"

    def read(self) -> Observed | None:
        api = find_api(self.ctx)
        if api is None:
            return None
        apigw = self.client("apigateway")
        stage = self.find("apigateway", "get_stage", restApiId=api["id"], stageName=self.physical)
        if stage is None:
            return None
        deployment = apigw.get_deployment(restApiId=api["id"], deploymentId=stage["deploymentId"])
        live = stage.get("methodSettings") or {}
        settings = {
            key: {f: live[key].get(f) for f in SETTING_PATHS} if key in live else None
            for key in (ALL_METHODS, PREDICT_METHOD)
        }
        enabled = bool(stage.get("cacheClusterEnabled"))
        tags = stage.get("tags") or {}
        state = {
            "RestApiId": api["id"],
            "DeploymentDescription": deployment.get("description", ""),
            "CacheClusterEnabled": enabled,
            "CacheClusterSize": stage.get("cacheClusterSize") if enabled else None,
            "TracingEnabled": bool(stage.get("tracingEnabled")),
            "MethodSettings": settings,
            "Tags": tags,
        }
        outputs = {
            "name": self.physical,
            "api_id": api["id"],
            "deployment_id": stage["deploymentId"],
            "arn": resource_arn(self.ctx, self._path(api["id"])),
        }
        return Observed(state, outputs, self.ctx.owns(tags))

    def desired(self, refs: Refs) -> dict[str, Any]:
        spec = self.ctx.spec.api
        cache = spec.cache
        common = {
            "metricsEnabled": spec.metrics,
            "loggingLevel": spec.logging_level,
            "dataTraceEnabled": False,  # request bodies never reach the logs
            "throttlingBurstLimit": spec.throttle.burst_limit,
            "throttlingRateLimit": float(spec.throttle.rate_limit),
            "cachingEnabled": cache.enabled,
            "cacheTtlInSeconds": cache.ttl_seconds,
            "cacheDataEncrypted": cache.encrypted,
        }
        return {
            "RestApiId": refs(API, "id"),
            "DeploymentDescription": f"mlpipe definition {definition_hash(self.ctx)}",
            "CacheClusterEnabled": cache.enabled,
            "CacheClusterSize": cache.size_gb if cache.enabled else None,
            "TracingEnabled": spec.tracing,
            # POST is cached only through its own method setting (stage-wide caching covers GET).
            "MethodSettings": {ALL_METHODS: common, PREDICT_METHOD: common},
            "Tags": self.tags,
        }

    def _busy(self, call: Callable[[], Any]) -> Any:
        """A stage or deployment call, retried while API Gateway is busy with the API."""
        return self.ctx.eventually(call, *BUSY)

    def _deploy(self, api_id: str, description: str) -> str:
        apigw = self.client("apigateway")
        deployment = self._busy(
            lambda: apigw.create_deployment(restApiId=api_id, description=description)
        )
        return str(deployment["id"])

    def _setting_ops(self, desired: dict[str, Any], changes: Diff | None) -> list[dict[str, str]]:
        ops = []
        for key, settings in desired["MethodSettings"].items():
            for field, path in SETTING_PATHS.items():
                if changes is None or affected(changes, f"MethodSettings.{key}.{field}"):
                    ops.append(replace(f"/{key}/{path}", settings[field]))
        return ops

    def create(self, desired: dict[str, Any]) -> Outputs:
        apigw, api_id = self.client("apigateway"), desired["RestApiId"]
        deployment_id = self._deploy(api_id, desired["DeploymentDescription"])
        cache = {"cacheClusterEnabled": desired["CacheClusterEnabled"]}
        if desired["CacheClusterEnabled"]:
            cache["cacheClusterSize"] = desired["CacheClusterSize"]
        self._busy(
            lambda: apigw.create_stage(
                restApiId=api_id,
                stageName=self.physical,
                deploymentId=deployment_id,
                tracingEnabled=desired["TracingEnabled"],
                tags=desired["Tags"],
                **cache,
            )
        )
        self._busy(
            lambda: apigw.update_stage(
                restApiId=api_id,
                stageName=self.physical,
                patchOperations=self._setting_ops(desired, None),
            )
        )
        return {
            "name": self.physical,
            "api_id": api_id,
            "deployment_id": deployment_id,
            "arn": resource_arn(self.ctx, self._path(api_id)),
        }

    def update(self, observed: Observed, desired: dict[str, Any], changes: Diff) -> Outputs:
        apigw, outputs = self.client("apigateway"), dict(observed.outputs)
        api_id = outputs["api_id"]
        ops = []
        if changes.touches("DeploymentDescription"):
            outputs["deployment_id"] = self._deploy(api_id, desired["DeploymentDescription"])
            ops.append(replace("/deploymentId", outputs["deployment_id"]))
        ops += patches(desired, changes, STAGE_PATHS) + self._setting_ops(desired, changes)
        if ops:
            self._busy(
                lambda: apigw.update_stage(
                    restApiId=api_id, stageName=self.physical, patchOperations=ops
                )
            )
        return outputs

    def delete(self, observed: Observed) -> None:
        forget(
            self.client("apigateway"),
            "delete_stage",
            restApiId=observed.outputs["api_id"],
            stageName=self.physical,
        )

    def warnings(self) -> list[str]:
        spec, notes = self.ctx.spec.api, []
        if spec.cache.enabled and not spec.cache.encrypted:
            notes.append("api.cache.encrypted is off (AWS FSBP APIGateway.5 expects it on)")
        if spec.logging_level == "OFF":
            notes.append("api.logging_level is OFF (AWS FSBP APIGateway.1 expects INFO or ERROR)")
        if not spec.tracing:
            notes.append("api.tracing is off (AWS FSBP APIGateway.3 expects X-Ray tracing)")
        return notes


class ExecutionLogs(LogGroup):
    """The group API Gateway writes the stage's execution logs to, named after the API's id.
    Created by mlpipe before the stage logs anything, so it has the pipeline's key, retention
    and tags, and destroy removes it (API Gateway would create it unencrypted, never expiring)."""

    def __init__(self, ctx: Context) -> None:
        name = f"API-Gateway-Execution-Logs_<api id>/{ctx.spec.api.stage}"
        super().__init__(ctx, "execution-logs", name, ctx.spec.monitoring.log_retention_days)
        self.depends_on = (*self.depends_on, API)

    def group(self) -> str | None:
        api = find_api(self.ctx)
        return self.physical.replace("<api id>", api["id"]) if api else None


def resources(ctx: Context) -> list[Resource]:
    return [RestApi(ctx), ApiAccount(ctx), ExecutionLogs(ctx), Stage(ctx)]
