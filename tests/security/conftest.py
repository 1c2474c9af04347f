"""The security modules' shared account: each module's ``stack`` built once, tests on copies."""

from __future__ import annotations

from typing import Any

import pytest

from mlpipe.core.context import Context
from tests.support import Shared, build_once, four_step


@pytest.fixture(scope="module")
def built(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Shared[dict[str, Any]]:
    """The module's ``stack(ctx)``, built once for the module by the idempotency check
    (``four_step``)."""
    stack = request.module.stack
    return build_once(
        tmp_path_factory.mktemp("built"), lambda ctx: four_step(ctx, stack(ctx)).outputs
    )


@pytest.fixture
def applied(ctx: Context, built: Shared[dict[str, Any]]) -> dict[str, Any]:
    """The stack's outputs, on a copy of the account the module's build applied."""
    return built.restore()
