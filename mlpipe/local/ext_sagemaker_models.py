"""SageMaker ``CreateModel`` keeps ``EnableNetworkIsolation`` and ``DescribeModel`` returns it.

moto drops the flag (every model reads back ``False``); AWS keeps it as given
(https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateModel.html).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from moto.sagemaker.responses import SageMakerResponse

from mlpipe.local.moto_ext import _wrap


def _create_model(original: Callable[..., Any]) -> Callable[..., Any]:
    def create_model(self: SageMakerResponse) -> Any:
        answer = original(self)
        model = self.sagemaker_backend._models[self._get_param("ModelName")]
        model.enable_network_isolation = bool(self._get_param("EnableNetworkIsolation", False))
        return answer

    return create_model


def install() -> None:
    _wrap(SageMakerResponse, "create_model", _create_model)
