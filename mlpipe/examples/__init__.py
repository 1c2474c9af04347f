"""Example models for the demo and the local runtime: two versions of a scikit-learn classifier
packaged as SageMaker model archives. Building them needs the ``demo`` extra (scikit-learn)."""

from mlpipe.examples.models import (
    DATASET,
    HELDOUT_FILE,
    MANIFEST_FILE,
    ExampleModel,
    build_examples,
    read_heldout,
)

__all__ = [
    "DATASET",
    "HELDOUT_FILE",
    "MANIFEST_FILE",
    "ExampleModel",
    "build_examples",
    "read_heldout",
]
