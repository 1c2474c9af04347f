"""mlpipe's tests. Imported before any conftest: moto's and the embedded AWS's settings that
are read at import or at a backend's creation are set here, for every test process."""

import os

# moto loads ~1,300 public AMIs into every EC2 backend it creates; mlpipe runs no instance.
os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
# SageMaker endpoints pass through Creating/Updating at once unless a test sets a (fake) delay.
os.environ.setdefault("MLPIPE_LOCAL_ENDPOINT_DELAY", "0")
