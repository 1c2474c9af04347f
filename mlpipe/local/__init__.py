"""The embedded AWS: moto's server, extended where moto lacks what mlpipe needs, and the
runtimes that run the pipeline's own code on it (SageMaker runtime, API, stream, batch jobs)."""
