"""SageMaker ``CreateModel`` checks what AWS checks before it accepts a model.

- The model data must exist: ``ValidationException: Could not find model data at s3://...``
  (moto creates a model from any URL).
- The image must be in the model's region: ``ValidationException: Region of "<image>" does not
  match expected region of <region>. Cross region ECR image pulls are not allowed.``
  (SageMaker pulls ECR images only from the region it runs in).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from moto.s3.models import s3_backends
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.models import SageMakerModelBackend

ECR_REGION = re.compile(r"^\d{12}\.dkr\.ecr(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/")


def _model_data_found(backend: SageMakerModelBackend, url: str) -> bool:
    bucket, _, key = url.removeprefix("s3://").partition("/")
    s3 = s3_backends[backend.account_id][backend.partition]
    if bucket not in s3.buckets:
        return False
    found = s3.buckets[bucket].keys.get(key)
    return found is not None and not getattr(found, "is_delete_marker", False)


def check_container(backend: SageMakerModelBackend, container: dict[str, Any]) -> None:
    image = str(container.get("Image") or "")
    match = ECR_REGION.match(image)
    if match and match.group(1) != backend.region_name:
        raise ValidationError(
            message=f'Region of "{image}" does not match expected region of '
            f"{backend.region_name}. Cross region ECR image pulls are not allowed."
        )
    url = container.get("ModelDataUrl")
    if url and url.startswith("s3://") and not _model_data_found(backend, url):
        raise ValidationError(message=f"Could not find model data at {url}.")


def _create_model(original: Callable[..., Any]) -> Callable[..., Any]:
    def create_model(self: SageMakerModelBackend, *args: Any, **kwargs: Any) -> Any:
        containers = [kwargs.get("primary_container") or {}, *(kwargs.get("containers") or [])]
        for container in containers:
            check_container(self, container)
        return original(self, *args, **kwargs)

    return create_model


def install() -> None:
    from mlpipe.local.moto_ext import _wrap

    _wrap(SageMakerModelBackend, "create_model", _create_model)
