"""mlpipe's tests. Imported before any conftest: moto's and the embedded AWS's settings that
are read at import or at a backend's creation are set here, for every test process."""

import gc
import os

import botocore.session

from mlpipe.core.clients import process_loader

# moto loads ~1,300 public AMIs into every EC2 backend it creates; mlpipe runs no instance.
os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
# SageMaker endpoints pass through Creating/Updating at once unless a test sets a (fake) delay.
os.environ.setdefault("MLPIPE_LOCAL_ENDPOINT_DELAY", "0")

import moto.core.models  # after the settings above: moto reads them at import

# Everything here reaches AWS through botocore, which moto intercepts with a botocore event
# handler. At every mock's start moto also registers a mock of the `requests` library for each
# of its ~1,500 URL patterns and 7 HTTP methods (about 45 ms per test); with no methods listed
# it registers none.
moto.core.models.RESPONSES_METHODS.clear()

# A test process keeps ~1 million objects alive (botocore's service models, moto's accounts,
# copies of applied accounts) and allocates fast: with the default threshold (700) a young
# collection runs every few hundred allocations, promotes short-lived objects, and full
# collections then took a third of the suite's time (0.3-0.7 s each, every few tests).
gc.set_threshold(10_000, 10, 10)


def _process_data_loader(session: botocore.session.Session) -> None:
    """Every botocore session of a test process reads the service models through mlpipe's
    one loader, as every session of an mlpipe process does: moto gives boto3 a new default
    session at each mock's start, which would parse the models again (tens of ms per client)."""
    session._components.lazy_register_component(
        "data_loader", lambda: process_loader(session.get_config_variable("data_path"))
    )


botocore.session.Session._register_data_loader = _process_data_loader  # type: ignore[method-assign]
