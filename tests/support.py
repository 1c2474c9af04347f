"""Test helpers shared by the resource tests."""

from __future__ import annotations

import copy
import sys
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Generic, TypeVar

import boto3
import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.core.base_backend import BackendDict
from moto.core.model_instances import model_data
from moto.moto_api._internal.models import moto_api_backend
from moto.s3.models import S3Backend, s3_backends
from moto.ssm.models import ParameterDict

from mlpipe.core.context import Context
from mlpipe.core.executor import Report, execute
from mlpipe.core.plan import Action, plan_apply
from mlpipe.core.resource import Resource
from mlpipe.local.moto_ext import windows as ext_windows
from tests.conftest import account
from tests.fake_time import FakeTime

T = TypeVar("T")


def four_step(ctx: Context, resources: Sequence[Resource]) -> Report:
    """The idempotency check: plan → create; apply; plan → no changes; apply → zero writes.

    Writes are counted from the API calls really sent (a botocore event hook), not from the plan.
    """
    first = plan_apply(resources)
    assert {s.action for s in first.steps} == {Action.CREATE}, [
        (s.key, s.action) for s in first.steps
    ]
    report = execute(first)
    failed = {k: o.error for k, o in report.outcomes.items() if o.error}
    assert report.ok, failed

    ctx.aws.log.reset()
    second = plan_apply(resources)
    drift = {s.key: s.diff.paths() for s in second.changes}
    assert not drift, drift
    assert ctx.aws.log.writes() == [], "plan must only read"
    again = execute(second)
    assert again.ok
    assert ctx.aws.log.writes() == [], "a converged apply must make no write call"
    return report


def queue_endpoint_results(region: str, results: Sequence[dict[str, Any]]) -> None:
    """Queue what moto's InvokeEndpoint answers next, in order: moto's own API for it
    (``/moto-api/static/sagemaker/endpoint-results``), called in process."""
    for result in results:
        moto_api_backend.set_sagemaker_result(
            body=result["Body"],
            content_type=result.get("ContentType"),
            prod_variant=result.get("InvokedProductionVariant"),
            custom_attrs=result.get("CustomAttributes"),
            account_id=DEFAULT_ACCOUNT_ID,
            region=region,
        )


def create_handler_state(region: str, table: str, parameters: dict[str, str]) -> None:
    """What the handlers and the batch job use beside the endpoint: the predictions table (the
    pipeline's keys, TTL on ``expirationTime``) and the registry's parameters."""
    dynamodb = boto3.client("dynamodb", region_name=region)
    dynamodb.create_table(
        TableName=table,
        KeySchema=[
            {"AttributeName": "predictionId", "KeyType": "HASH"},
            {"AttributeName": "timestamp", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "predictionId", "AttributeType": "S"},
            {"AttributeName": "timestamp", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.update_time_to_live(
        TableName=table,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": "expirationTime"},
    )
    ssm = boto3.client("ssm", region_name=region)
    for name, value in parameters.items():
        ssm.put_parameter(Name=name, Value=value, Type="String")


def converge(resources: Sequence[Resource]) -> Report:
    report = execute(plan_apply(resources))
    assert report.ok, {k: o.error for k, o in report.outcomes.items() if o.error}
    return report


def _copy_parameter_dict(original: ParameterDict, memo: dict[int, Any]) -> ParameterDict:
    # Its constructor needs arguments, so copy.deepcopy cannot rebuild it on its own.
    new = ParameterDict.__new__(ParameterDict)
    new.default_factory = original.default_factory
    memo[id(original)] = new
    new.__dict__.update(copy.deepcopy(original.__dict__, memo))
    for key, value in original.items():
        dict.__setitem__(new, key, copy.deepcopy(value, memo))
    return new


def _copy_weak_values(
    original: weakref.WeakValueDictionary[Any, Any], memo: dict[int, Any]
) -> weakref.WeakValueDictionary[Any, Any]:
    # Its own __deepcopy__ keeps the original values: the copy would point at the old account.
    new: weakref.WeakValueDictionary[Any, Any] = weakref.WeakValueDictionary()
    memo[id(original)] = new
    for key, value in list(original.items()):
        new[copy.deepcopy(key, memo)] = copy.deepcopy(value, memo)
    return new


@contextmanager
def _deep_copying() -> Iterator[None]:
    """copy.deepcopy for moto's backends: a lock is copied as a new (free) lock, a weak
    dictionary's values are copied with the objects that hold them."""
    kinds = {
        type(threading.Lock()): lambda _lock, _memo: threading.Lock(),
        type(threading.RLock()): lambda _lock, _memo: threading.RLock(),
        ParameterDict: _copy_parameter_dict,
        weakref.WeakValueDictionary: _copy_weak_values,
    }
    dispatch = copy._deepcopy_dispatch  # type: ignore[attr-defined]
    saved = {kind: dispatch.get(kind) for kind in kinds}
    dispatch.update(kinds)
    try:
        yield
    finally:
        for kind, before in saved.items():
            if before is None:
                del dispatch[kind]
            else:
                dispatch[kind] = before


def _side_tables() -> list[weakref.WeakKeyDictionary[Any, Any]]:
    """The embedded AWS's state kept beside moto's objects (endpoint transitions, creation
    times, client tokens): weak dictionaries keyed by those objects, in mlpipe.local's modules."""
    return [
        value
        for name, module in sorted(sys.modules.items())
        if name.startswith("mlpipe.local") and module is not None
        for value in vars(module).values()
        if isinstance(value, weakref.WeakKeyDictionary)
    ]


class MotoState:
    """A copy of moto's in-process accounts, to start many tests from one applied pipeline.

    ``take`` copies every backend in use (and the embedded AWS's side tables); ``restore`` puts
    a fresh copy of them into the running ``mock_aws``: the test sees the account exactly as it
    was, resource ids included, and changes only its own copy.
    """

    def __init__(self) -> None:
        self._dicts = list(BackendDict._instances)  # type: ignore[misc]
        self._tables = _side_tables()
        accounts = [{a: dict(backend) for a, backend in d.items()} for d in self._dicts]
        # moto tracks every model it makes, to dispose of (S3 objects' files) at reset: the
        # copy kept here must outlive the account, so it is not tracked.
        tracked = [
            kind.instances_tracked for kinds in model_data.values() for kind in kinds.values()
        ]
        counts = [len(instances) for instances in tracked]
        memo: dict[int, Any] = {}
        with _deep_copying():
            copied = copy.deepcopy(accounts, memo)
            # Only the entries of this account's objects: moto's caches keep backends of earlier
            # accounts alive (an lru_cache holds its account backends), and with them their
            # entries, which a copy would carry along at every restore.
            tables = [
                [
                    (memo[id(key)], copy.deepcopy(value, memo))
                    for key, value in list(table.items())
                    if id(key) in memo
                ]
                for table in self._tables
            ]
            self._state = (copied, tables)
        for instances, count in zip(tracked, counts, strict=True):
            del instances[count:]

    def restore(self) -> None:
        with _deep_copying():
            accounts, tables = copy.deepcopy(self._state)
        for backends, copied in zip(self._dicts, accounts, strict=True):
            for account_id, regions in copied.items():
                regional = backends[account_id]  # registers the dict for mock_aws's reset
                dict.clear(regional)
                dict.update(regional, regions)
                for backend in regions.values():
                    if isinstance(backend, S3Backend):  # bucket names are global: S3 keeps a map
                        for bucket in backend.buckets.values():
                            s3_backends.bucket_accounts[bucket.name] = (
                                bucket.partition,
                                bucket.account_id,
                            )
        for table, entries in zip(self._tables, tables, strict=True):
            table.update(entries)


class Shared(Generic[T]):
    """What a module fixture built once on its own account: the account's state and the result."""

    def __init__(self, state: MotoState, result: T, built_at: float) -> None:
        self.state = state
        self.result = result
        self.built_at = built_at  # the build's clock when it ended

    def restore(self) -> T:
        """The account as the build left it, an hour ago on the test's clock: the embedded
        AWS's consistency windows (timed from the build's clock) are long closed."""
        self.state.restore()
        clock = ext_windows.clock
        if isinstance(clock, FakeTime):
            clock.now = max(clock.now, self.built_at + 3600)
        return self.result


def build_once(
    home: Path,
    build: Callable[[Context], T],
    setup: Callable[[pytest.MonkeyPatch, Context], object] | None = None,
) -> Shared[T]:
    """Runs ``build`` on a fresh account (``tests.conftest.account``) and keeps its state."""
    with account(home, setup) as ctx:
        result = build(ctx)
        return Shared(MotoState(), result, ctx.clock.now())
