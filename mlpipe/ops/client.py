"""A client of the deployed inference API: `mlpipe predict`, the demo, and tests use it.

It finds the API and its credentials the way a user would: the REST API by name, the stage
from the spec, the API key from its usage plan (auth `api_key`) or SigV4 signing with the
caller's credentials (auth `iam`).
"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from mlpipe.context import PipelineContext
from mlpipe.core.errors import MlpipeError


@dataclass(frozen=True)
class Prediction:
    """The API's answer: who served it, with which version, and what it predicted."""

    prediction_id: str
    variant: str
    version: str
    prediction: Any
    latency_ms: float

    @property
    def label(self) -> int | None:
        return self.prediction.get("label") if isinstance(self.prediction, dict) else None


class _Refused(MlpipeError):
    """A 400: this request is invalid, or the cache holds a refusal of someone else's."""


def features_hash(
    features: list[float], variant: str | None = None, version: str | None = None
) -> str:
    """The API's cache key for a request, as the preprocess handler recomputes and checks it:
    SHA-256 of the canonical JSON of the features (as floats), variant and version."""
    canonical = {"features": [float(v) for v in features], "variant": variant, "version": version}
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class ApiClient:
    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        cache_header: str = "X-Features-Hash",
        signer: SigV4Auth | None = None,
    ) -> None:
        self.url = url.rstrip("/") + "/predict"
        self.api_key = api_key
        self.cache_header = cache_header
        self.signer = signer

    def predict(
        self,
        features: list[float],
        *,
        variant: str | None = None,
        version: str | None = None,
        fresh: str | None = None,
    ) -> Prediction:
        """POST the features. The cache key is the request's hash (`features_hash`), so the API
        answers repeated requests from its cache; `fresh` (letters, digits, `._-`) makes a key
        of its own, for an answer from the model.

        API Gateway caches every status, so a client that sent someone else's hash with other
        (or invalid) features leaves a cached 400, never an answer, under that hash for the
        cache's TTL. A 400 is therefore asked once more under a key of our own: a stale refusal
        then gets its answer, a request that is really invalid gets its 400 again."""
        payload: dict[str, Any] = {"features": features}
        if variant:
            payload["variant"] = variant
        if version:
            payload["version"] = version
        body = json.dumps(payload).encode()
        key = features_hash(features, variant or None, version or None)
        started = time.monotonic()
        try:
            answer = self._post(body, f"{key}-{fresh.lstrip('-')}" if fresh else key)
        except _Refused:
            answer = self._post(body, f"{key}-{uuid.uuid4().hex}")
        return Prediction(
            prediction_id=answer["predictionId"],
            variant=answer["invokedVariant"],
            version=answer["modelVersion"],
            prediction=answer.get("predictions"),
            latency_ms=(time.monotonic() - started) * 1000,
        )

    def _post(self, body: bytes, key: str) -> dict[str, Any]:
        headers = {"Content-Type": "application/json", self.cache_header: key}
        if self.api_key:
            headers["x-api-key"] = self.api_key
        if self.signer:
            signed = AWSRequest(method="POST", url=self.url, data=body, headers=headers)
            self.signer.add_auth(signed)
            headers = dict(signed.headers.items())
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return dict(json.loads(response.read()))
        except urllib.error.HTTPError as exc:
            text = exc.read().decode()
            error = _Refused if exc.code == 400 else MlpipeError
            raise error(f"POST {self.url}: {exc.code} {text}") from exc
        except urllib.error.URLError as exc:
            raise MlpipeError(f"POST {self.url}: {exc.reason}") from exc


def api_client(ctx: PipelineContext, url: str | None = None) -> ApiClient:
    """A client of the pipeline's API: at `url` (the local API) or its execute-api URL."""
    spec, names, aws = ctx.spec, ctx.names, ctx.aws
    if url is None:
        apis = aws.client("apigateway").get_rest_apis(limit=500)["items"]
        found = next((a for a in apis if a["name"] == names.api), None)
        if found is None:
            raise MlpipeError(f"no REST API named {names.api}: run `mlpipe apply` first")
        url = f"https://{found['id']}.execute-api.{aws.region}.amazonaws.com/{spec.api.stage}"
    api_key = signer = None
    if spec.api.auth == "api_key":
        keys = aws.client("apigateway").get_api_keys(nameQuery=names.api_key, includeValues=True)
        api_key = next((k["value"] for k in keys["items"] if k["name"] == names.api_key), None)
        if api_key is None:
            raise MlpipeError(f"no API key named {names.api_key}: run `mlpipe apply` first")
    elif spec.api.auth == "iam":
        credentials = aws.session.get_credentials()
        signer = SigV4Auth(credentials, "execute-api", aws.region)
    return ApiClient(url, api_key=api_key, cache_header=spec.api.cache.key_header, signer=signer)
