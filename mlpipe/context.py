"""The run context of this pipeline: the core's generic `Context` over mlpipe's spec and names."""

from __future__ import annotations

from typing import TypeAlias

from mlpipe.core.context import Context
from mlpipe.naming import Names
from mlpipe.spec import Spec

PipelineContext: TypeAlias = Context[Spec, Names]
