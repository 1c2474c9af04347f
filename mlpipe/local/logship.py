"""CloudWatch Logs written by the embedded AWS's runtimes where AWS's services write them.

A runtime calls :meth:`LogShipper.write` (an append under a lock); a thread sends what was
written with ``PutLogEvents`` every ``flush_interval`` seconds, one call per log stream,
creating the group and the stream when they do not exist yet (as the service's role does on
AWS). Logging never fails the runtime: a failed send is logged and dropped.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from typing import Any

from mlpipe.local.service import Flusher

__all__ = ["LogShipper"]


MAX_EVENTS = 10_000  # PutLogEvents: at most 10,000 events per call


class LogShipper(Flusher):
    """Buffers log lines per (group, stream) and sends them with PutLogEvents."""

    thread_name = "mlpipe-logs"
    failure = "could not write logs"

    _pending: list[tuple[str, str, int, str]]

    def write(self, group: str, stream: str, message: str) -> None:
        with self._lock:
            self._pending.append((group, stream, int(self.wall() * 1000), message))

    def flush(self) -> int:
        """Send everything written so far; the number of events sent."""
        with self._flushing:
            with self._lock:
                pending, self._pending = self._pending, []
            by_stream: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
            for group, stream, stamp, message in pending:
                by_stream[(group, stream)].append({"timestamp": stamp, "message": message})
            for (group, stream), events in by_stream.items():
                for start in range(0, len(events), MAX_EVENTS):
                    self._put(group, stream, events[start : start + MAX_EVENTS])
            return len(pending)

    def _put(self, group: str, stream: str, events: list[dict[str, Any]]) -> None:
        logs = self.client()
        try:
            logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)
        except logs.exceptions.ResourceNotFoundException:
            exists = logs.exceptions.ResourceAlreadyExistsException
            with contextlib.suppress(exists):
                logs.create_log_group(logGroupName=group)
            with contextlib.suppress(exists):
                logs.create_log_stream(logGroupName=group, logStreamName=stream)
            logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)
