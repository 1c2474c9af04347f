"""Shared fixtures: fake credentials, moto (with mlpipe's extensions), a run context.

The suite runs in parallel (pytest-xdist, `-n auto`): every test must be able to run beside any
other, in another process, in any order. What keeps them apart:

- `MLPIPE_HOME` is a fresh directory per test (``isolated_home``, autouse): a detached
  embedded AWS, its pid file and its log never meet another test's.
- Servers listen on port 0 (a free port the OS picks): ``LocalAws(port=0)``,
  ``mlpipe local up --port 0``; never a fixed port.
- moto's state is per process: ``ctx`` (and every ``mock_aws()``) starts from an empty account.
- Time that mlpipe waits (retries, eventual consistency, endpoint transitions) is injected:
  ``ctx``'s clock is a ``FakeTime`` (``tests/support.py``) that is also the clock of the
  embedded AWS's consistency windows, which are on: a wait moves it, nothing sleeps.

- moto's EC2 backends load no public AMIs and endpoints change state at once unless a test
  sets a (fake) delay: both set in ``tests/__init__.py``, for every worker.

Speed: a resource module runs the four-step idempotency check (``tests.support.four_step``) in
one test; its other tests start from ``applied``: a copy of the moto account one ``converge``
built for the module (``tests.support.build_once``; ``--dist loadfile`` keeps a module on one
worker, so that happens once). A CLI test that runs the
real command in a subprocess pays Python's start-up, not the emulator's: moto is imported by
the embedded AWS's own process, never by a ``--local`` command talking to it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import pytest
from moto import mock_aws

from mlpipe.core.clients import Aws, AwsTarget
from mlpipe.core.context import Context
from mlpipe.local.moto_ext import install_extensions
from mlpipe.local.moto_ext import windows as ext_windows
from mlpipe.spec import Names, Spec, load_spec
from tests.fake_time import FakeTime

ROOT = Path(__file__).resolve().parents[1]
SPEC_PATH = ROOT / "config" / "pipeline.yaml"
WINDOWS = (
    "MLPIPE_LOCAL_ROLE_WINDOW",
    "MLPIPE_LOCAL_BACKUPS_WINDOW",
    "MLPIPE_LOCAL_ENDPOINT_CONFIG_WINDOW",
    "MLPIPE_LOCAL_ENI_RELEASE_WINDOW",
    "MLPIPE_LOCAL_MODEL_DATA_WINDOW",
    "MLPIPE_LOCAL_APIGATEWAY_WINDOW",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The order in which ``--dist loadfile`` hands modules to the workers (xdist's own
    reordering, by number of tests only, is off in pyproject.toml): the end-to-end modules
    first, whose one or two tests run for tens of seconds (handed out last, one would keep a
    worker busy alone at the end), then the others by their number of tests, most first."""
    per_module = Counter(item.path for item in items)
    items.sort(key=lambda item: ("e2e" not in item.path.parts, -per_module[item.path]))


@pytest.fixture(autouse=True)
def isolated_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Every test gets its own MLPIPE_HOME: no shared ~/.mlpipe between parallel workers."""
    monkeypatch.setenv("MLPIPE_HOME", str(tmp_path_factory.mktemp("mlpipe-home")))


def set_fake_credentials(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("MLPIPE_HOME", str(home / "mlpipe-home"))
    # The embedded AWS's consistency windows run on real time in a server process (the e2e
    # tests' `mlpipe local up`), where no clock can be injected: off there. `ctx` turns them on.
    for window in WINDOWS:
        monkeypatch.setenv(window, "0")


@pytest.fixture
def fake_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    set_fake_credentials(monkeypatch, tmp_path)


@cache
def default_spec() -> Spec:
    """``config/pipeline.yaml``, parsed once per process (a spec is frozen)."""
    return load_spec(SPEC_PATH)


@pytest.fixture
def spec() -> Spec:
    return default_spec()


def windows_on(monkeypatch: pytest.MonkeyPatch, time: FakeTime | None = None) -> None:
    """The embedded AWS's consistency windows at their defaults, on a fake clock."""
    monkeypatch.setattr(ext_windows, "clock", time or FakeTime())
    for window in WINDOWS:
        monkeypatch.delenv(window, raising=False)


def make_context(spec: Spec) -> Context:
    """A context on the embedded AWS's clock when a test made that clock fake (``ctx`` does):
    mlpipe's waits then move the time the consistency windows read."""
    aws = Aws(AwsTarget(region="us-east-1"))
    names = Names(spec.pipeline, spec.environment, aws.account, aws.region)
    clock = ext_windows.clock
    time = clock if isinstance(clock, FakeTime) else FakeTime()
    return Context(aws, spec, names, clock=time.clock(), consistency_timeout=5)


@pytest.fixture
def ctx(fake_credentials: None, spec: Spec, monkeypatch: pytest.MonkeyPatch) -> Iterator[Context]:
    """A run context on moto's in-process AWS, with its consistency windows on (the defaults);
    its waits never sleep: they move the one fake clock the windows read."""
    windows_on(monkeypatch)
    with mock_aws():
        install_extensions()
        yield make_context(spec)


@contextmanager
def account(
    home: Path, setup: Callable[[pytest.MonkeyPatch, Context], object] | None = None
) -> Iterator[Context]:
    """`ctx` for a fixture wider than a test: its own environment and moto account.

    ``setup`` patches what the tests' own fixtures patch (a fake clock), for the same run."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        set_fake_credentials(monkeypatch, home)
        windows_on(monkeypatch)
        with mock_aws():
            install_extensions()
            ctx = make_context(load_spec(SPEC_PATH))
            if setup is not None:
                setup(monkeypatch, ctx)
            yield ctx
