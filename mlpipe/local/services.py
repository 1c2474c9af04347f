"""The runtimes that make the embedded AWS run the pipeline's own code, started together:
the SageMaker runtime (real models), the deployed API (real preprocess handler) and the
stream poller (real stream handler). They discover the deployed resources through boto3, so
they may start before `apply` and follow whatever it creates or changes.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from mlpipe.core.clients import Aws
from mlpipe.local.api import LocalApi
from mlpipe.local.functions import FunctionNotFoundError, LocalFunctions, pipeline_sources
from mlpipe.local.logship import LogShipper
from mlpipe.local.metrics import MetricsPublisher
from mlpipe.local.runtime import LocalRuntime
from mlpipe.local.service import Service
from mlpipe.local.stream import MappingNotFoundError, StreamPoller
from mlpipe.naming import Names

log = logging.getLogger(__name__)


@dataclass
class LocalServices(Service):
    aws: Aws
    names: Names
    stage: str
    host: str = "127.0.0.1"
    runtime_port: int = 0
    api_port: int = 0
    poll_interval: float = 0.5
    metrics_interval: float = 1.0
    metrics: MetricsPublisher = field(init=False)
    logs: LogShipper = field(init=False)
    runtime: LocalRuntime = field(init=False)
    functions: LocalFunctions = field(init=False)
    api: LocalApi = field(init=False)
    poller: StreamPoller | None = field(init=False, default=None)
    _stop: threading.Event = field(init=False, default_factory=threading.Event)
    _thread: threading.Thread | None = field(init=False, default=None)

    @property
    def api_url(self) -> str:
        return self.api.stage_url(self.stage)

    def start(self) -> LocalServices:
        self.metrics = MetricsPublisher(
            lambda: self.aws.client("cloudwatch"), flush_interval=self.metrics_interval
        ).start()
        self.logs = LogShipper(
            lambda: self.aws.client("logs"), flush_interval=self.metrics_interval
        ).start()
        self.runtime = LocalRuntime(
            self.aws, self.host, self.runtime_port, metrics=self.metrics, logs=self.logs
        ).start()
        self.functions = LocalFunctions(
            self.aws.client,
            pipeline_sources(self.names),
            endpoint_url=str(self.aws.endpoint_url),
            region=self.aws.region,
            sagemaker_runtime_url=self.runtime.endpoint_url,
            metrics=self.metrics,
        )
        self.api = LocalApi(
            self.aws.client,
            self.functions,
            self.names.api,
            host=self.host,
            port=self.api_port,
            metrics=self.metrics,
        ).start()
        self._stop.clear()
        self._thread = threading.Thread(target=self._stream, name="mlpipe-stream", daemon=True)
        self._thread.start()
        return self

    def _stream(self) -> None:
        while not self._stop.is_set():
            try:
                if self.poller is None:
                    self.poller = StreamPoller(
                        self.aws.client,
                        self.functions,
                        self.names.function("stream-processor"),
                        metrics=self.metrics,
                    )
                self.poller.poll_once()
            except (FunctionNotFoundError, MappingNotFoundError):
                self.poller = None  # not deployed (yet): look again next round
            except Exception:
                log.exception("the stream poller failed a round")
            self._stop.wait(self.poll_interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.api.stop()
        self.runtime.stop()
        self.functions.close()
        self.metrics.stop()
        self.logs.stop()
