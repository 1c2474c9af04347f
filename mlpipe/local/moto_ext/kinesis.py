"""Kinesis ``CreateStream`` applies ``Tags`` in the embedded AWS (moto drops them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from moto.kinesis.responses import KinesisResponse

from mlpipe.local.moto_ext import install_declared, wrapper_of


@wrapper_of(KinesisResponse, "create_stream")
def _create_stream(original: Callable[..., Any]) -> Callable[..., Any]:
    """CreateStream applies its Tags to the new stream."""

    def create(self: KinesisResponse) -> Any:
        result = original(self)
        tags = self._get_param("Tags")
        if tags:
            self.kinesis_backend.add_tags_to_stream(None, self._get_param("StreamName"), tags)
        return result

    return create


def install() -> None:
    install_declared(__name__)
