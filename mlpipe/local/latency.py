"""AWS's clock for the embedded AWS: a round trip per call and the provisioning time AWS shows.

moto answers every call in milliseconds, so a run against it says nothing about how long the
same run takes in an account. A :class:`Profile` makes the embedded AWS's server hold each
answer for ``factor * (round trip + provisioning time of that call)`` seconds. The wait happens
before moto sees the request and outside its one-request-at-a-time lock, so concurrent calls
wait concurrently, as they do in AWS.

Provisioning is modelled as the call that starts it taking that long: AWS answers
``CreateEndpoint`` at once and the endpoint is ``Creating`` for minutes, and nothing that needs
the endpoint can go on before it is ``InService``; holding the ``CreateEndpoint`` answer puts the
same time on the same path of the dependency graph.

The durations are what AWS shows for this pipeline's resource kinds, each with its source.
Most are not in any service level agreement: they are typical values, good for a bound, not a
promise. ``install(profile)`` turns the profile on for every embedded AWS server of this process
(``None`` turns it off); ``python -m mlpipe.local.latency`` prints the table.
"""

from __future__ import annotations

import io
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass(frozen=True)
class Duration:
    """How long AWS takes for one call's work, in real seconds, and where that comes from.

    ``awaited``: something waits for it, mlpipe (a waiter, a poll) or AWS (the next call is
    refused until it is done); the profile holds the call. Work nothing waits for (an interface
    endpoint becoming available, a stage's cache cluster) is listed, not held."""

    seconds: float
    source: str
    awaited: bool = True


# (service as signed, operation) -> the time AWS takes before what the call made is usable.
AWS_DURATIONS: dict[tuple[str, str], Duration] = {
    ("sagemaker", "CreateEndpoint"): Duration(
        480,
        "Creating -> InService for a real-time endpoint on ml.m5 instances: 'can take a few "
        "minutes' (docs.aws.amazon.com/sagemaker/latest/dg/realtime-endpoints-deploy-models.html);"
        " botocore's EndpointInService waiter polls every 30 s up to 120 times "
        "(botocore/data/sagemaker/2017-07-24/waiters-2.json); 8 min is the typical value",
    ),
    ("sagemaker", "UpdateEndpoint"): Duration(
        480,
        "a new endpoint config is deployed blue/green: new instances are provisioned as for "
        "CreateEndpoint before traffic moves (docs.aws.amazon.com/sagemaker/latest/dg/"
        "deployment-guardrails-blue-green.html)",
    ),
    ("sagemaker", "UpdateEndpointWeightsAndCapacities"): Duration(
        60,
        "the endpoint is Updating while weights change on the running instances, no new "
        "instance (docs.aws.amazon.com/sagemaker/latest/APIReference/"
        "API_UpdateEndpointWeightsAndCapacities.html); about a minute, an estimate",
    ),
    ("sagemaker", "DeleteEndpoint"): Duration(
        120,
        "Deleting until the instances are released; botocore's EndpointDeleted waiter polls "
        "every 30 s (botocore/data/sagemaker/2017-07-24/waiters-2.json); 2 min, an estimate",
    ),
    ("ec2", "CreateVpcEndpoint"): Duration(
        120,
        "interface endpoints are pending until their network interfaces are up, about 2 min; "
        "terraform-provider-aws waits up to 10 min (aws_vpc_endpoint timeouts, "
        "registry.terraform.io/providers/hashicorp/aws/latest/docs/resources/vpc_endpoint); "
        "an apply does not wait for it",
        awaited=False,
    ),
    ("ec2", "DeleteVpcEndpoints"): Duration(
        120,
        "interface endpoints are deleting until their network interfaces are gone, and mlpipe "
        "waits for it before the subnets go; same source as CreateVpcEndpoint",
    ),
    ("batch", "CreateComputeEnvironment"): Duration(
        60,
        "CREATING -> VALID, and CreateJobQueue refuses an environment that is not VALID "
        "(docs.aws.amazon.com/batch/latest/APIReference/API_CreateJobQueue.html); about a "
        "minute for Fargate, an estimate",
    ),
    ("batch", "DeleteComputeEnvironment"): Duration(
        60,
        "DELETING after the environment is DISABLED; an estimate of the same order as create",
    ),
    ("apigateway", "CreateStage"): Duration(
        240,
        "a stage with a cache cluster: 'Creating or deleting a cache takes about 4 minutes' "
        "(docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-caching.html); the "
        "stage serves meanwhile and nothing waits for the cache",
        awaited=False,
    ),
    ("apigateway", "DeleteStage"): Duration(
        240, "deleting the stage's cache cluster, same source as CreateStage", awaited=False
    ),
    ("dynamodb", "CreateTable"): Duration(
        20,
        "CREATING -> ACTIVE; botocore's TableExists waiter polls every 20 s "
        "(botocore/data/dynamodb/2012-08-10/waiters-2.json); a small table is ACTIVE within "
        "one poll",
    ),
    ("dynamodb", "DeleteTable"): Duration(20, "DELETING; same waiter file (TableNotExists)"),
    ("kinesis", "CreateStream"): Duration(
        30,
        "CREATING -> ACTIVE; botocore's StreamExists waiter polls every 10 s "
        "(botocore/data/kinesis/2013-12-02/waiters-2.json); about 30 s, an estimate",
    ),
    ("kinesis", "DeleteStream"): Duration(30, "DELETING; same source as CreateStream"),
    ("iam", "CreateRole"): Duration(
        10,
        "IAM is eventually consistent: a new role can be refused by the service assuming it "
        "for seconds (docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html"
        "#troubleshoot_general_eventual-consistency); 10 s, an estimate",
    ),
    ("lambda", "CreateFunction"): Duration(
        90,
        "a function in a VPC is Pending while Lambda creates its Hyperplane network "
        "interfaces (docs.aws.amazon.com/lambda/latest/dg/functions-states.html); botocore's "
        "FunctionActiveV2 waiter polls every 1 s for 5 min; 90 s, an estimate",
    ),
    ("lambda", "DeleteFunction"): Duration(
        1200,
        "the function's Hyperplane network interfaces are released up to about 20 min after "
        "the delete; the subnets and security groups cannot be deleted before "
        "(hashicorp/terraform-provider-aws commit 922037e, 'Updated handling for Lambda "
        "Hyperplane ENIs', after confirmation from the Lambda team)",
    ),
}
# In-region API calls answer in tens of milliseconds.
AWS_ROUND_TRIP = Duration(0.05, "a typical in-region API round trip, an estimate")


@dataclass(frozen=True)
class Profile:
    """AWS's durations scaled by ``factor`` (e.g. 1/300: an 8-minute endpoint takes 1.6 s)."""

    factor: float = 1 / 300
    round_trip: Duration = AWS_ROUND_TRIP
    durations: Mapping[tuple[str, str], Duration] = field(default_factory=lambda: AWS_DURATIONS)

    def real_seconds(self, service: str, operation: str) -> float:
        """What the call costs in AWS: a round trip plus its provisioning time."""
        extra = self.durations.get((service, operation))
        held = extra.seconds if extra is not None and extra.awaited else 0.0
        return self.round_trip.seconds + held

    def seconds(self, service: str, operation: str) -> float:
        """What the call costs under this profile: the real time times the factor."""
        return self.real_seconds(service, operation) * self.factor


_active: Profile | None = None
_calls: list[tuple[str, str, float]] = []
_calls_lock = threading.Lock()


def install(profile: Profile | None) -> None:
    """Apply ``profile`` to every embedded AWS server of this process; None removes it."""
    global _active
    _active = profile
    with _calls_lock:
        _calls.clear()


def calls() -> list[tuple[str, str, float]]:
    """(service, operation, seconds held) of each call answered under the profile so far."""
    with _calls_lock:
        return list(_calls)


_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")
# REST operations the profile slows down, by service, method and path.
_REST: dict[str, list[tuple[str, re.Pattern[str], str]]] = {
    "lambda": [
        ("POST", re.compile(r"^/2015-03-31/functions/?$"), "CreateFunction"),
        ("DELETE", re.compile(r"^/2015-03-31/functions/[^/]+/?$"), "DeleteFunction"),
    ],
    "apigateway": [
        ("POST", re.compile(r"^/restapis/[^/]+/stages/?$"), "CreateStage"),
        ("DELETE", re.compile(r"^/restapis/[^/]+/stages/[^/]+/?$"), "DeleteStage"),
    ],
    "batch": [
        ("POST", re.compile(r"^/v1/createcomputeenvironment$"), "CreateComputeEnvironment"),
        ("POST", re.compile(r"^/v1/deletecomputeenvironment$"), "DeleteComputeEnvironment"),
    ],
}


def classify(environ: Mapping[str, Any], body: bytes) -> tuple[str, str]:
    """The (service, operation) of a signed AWS request: the service from the signature's
    credential scope, the operation from X-Amz-Target (JSON protocols), the Action parameter
    (query protocols) or the method and path (the REST calls the profile slows down)."""
    scope = _CREDENTIAL_SCOPE.search(str(environ.get("HTTP_AUTHORIZATION", "")))
    service = scope.group(1) if scope else "?"
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return service, str(target).rsplit(".", 1)[-1]
    method, path = str(environ.get("REQUEST_METHOD", "")), str(environ.get("PATH_INFO", ""))
    for rest_method, pattern, operation in _REST.get(service, []):
        if method == rest_method and pattern.match(path):
            return service, operation
    action = parse_qs(str(environ.get("QUERY_STRING", ""))).get("Action")
    if not action and b"Action=" in body:
        action = parse_qs(body.decode("utf-8", "replace")).get("Action")
    return service, action[0] if action else f"{method} {path}"


def middleware(app: WsgiApp) -> WsgiApp:
    """Hold each AWS call for its profiled time, then let ``app`` (moto) answer it."""

    def held(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        profile = _active
        if profile is None or str(environ.get("PATH_INFO", "")).startswith("/moto-api"):
            return app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        service, operation = classify(environ, body)
        seconds = profile.seconds(service, operation)
        with _calls_lock:
            _calls.append((service, operation, seconds))
        time.sleep(seconds)
        return app(environ, start_response)

    return held


def main() -> int:
    profile = Profile()
    print(f"round trip {profile.round_trip.seconds:g} s: {profile.round_trip.source}")
    for (service, operation), duration in sorted(profile.durations.items()):
        held = "" if duration.awaited else " (not awaited: not held)"
        print(f"{service}:{operation}  {duration.seconds:g} s{held}  {duration.source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
