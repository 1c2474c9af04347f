"""The embedded AWS: moto's server, extended where moto lacks what mlpipe needs, and the
runtimes that run the pipeline's own code on it (SageMaker runtime, API, stream, batch jobs)."""

# Here, not in `server`, so the CLI shows them without importing moto.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4599
