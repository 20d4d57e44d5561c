"""Prometheus metrics and the replica header of the speech server (docs/server.md, "Metrics").

:func:`install` puts an ASGI middleware in front of the app that counts every answer by
endpoint and status, times it to its last byte (a streamed answer ends when its last chunk is
sent), records the batch each speech request ran in, and adds the header
:data:`REPLICA_HEADER` naming the process (or the Ray Serve replica) that answered. ``GET
/metrics`` gives these with the worker's counters and queue length in Prometheus' text format
(version 0.0.4), written by hand: no dependency.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from fastapi import FastAPI, Request
    from starlette.types import ASGIApp

    from .batcher import SpeechJob, Worker
    from .service import SpeechService

#: The response header that names the replica (process) that answered.
REPLICA_HEADER = "x-chattts-replica"
#: Environment variable that names the replica (default: ``host:pid``).
REPLICA_ENV = "CHATTTS_REPLICA"
#: Upper bounds (seconds) of the latency histogram's buckets.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
#: Upper bounds of the batch-size histogram's buckets.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
#: The key under which a request's record sits in its ASGI scope.
SCOPE_KEY = "chattts.metrics"
#: Worker counters that only grow (the others are gauges).
_COUNTERS = frozenset(
    {"requests", "completed", "cancelled", "failed", "batches", "rows", "preempted", "steps"}
    | {"audio_seconds"}
)
_HELP = {
    "queued": "segments waiting for a row (queue length)",
    "running": "rows generating now",
    "busy": "1 while rows generate",
    "rows": "segments admitted into the code run",
    "preempted": "background rows that gave their slot to a live request",
    "batches": "code runs opened (a run lasts while it has rows)",
    "audio_seconds": "seconds of audio synthesised",
}


def default_replica() -> str:
    """The replica name of a plain server: ``$CHATTTS_REPLICA``, else ``host:pid``."""
    return os.environ.get(REPLICA_ENV) or f"{socket.gethostname()}:{os.getpid()}"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(value: float) -> str:
    if math.isinf(value):
        return "+Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Histogram:
    """Cumulative buckets, sum and count per label set (not thread-safe: :class:`Metrics`
    holds the lock)."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.series: dict[tuple[tuple[str, str], ...], list[float]] = {}

    def observe(self, labels: tuple[tuple[str, str], ...], value: float) -> None:
        row = self.series.setdefault(labels, [0.0] * (len(self.bounds) + 3))
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                row[i] += 1
        row[-3] += 1  # +Inf
        row[-2] += value
        row[-1] += 1

    def lines(self, name: str, extra: str) -> list[str]:
        out = []
        for labels, row in sorted(self.series.items()):
            base = ",".join(f'{k}="{_label(v)}"' for k, v in labels) + extra
            for bound, n in zip((*self.bounds, math.inf), row[:-2], strict=True):
                out.append(f'{name}_bucket{{{base},le="{_num(bound)}"}} {_num(n)}')
            out.append(f"{name}_sum{{{base}}} {_num(row[-2])}")
            out.append(f"{name}_count{{{base}}} {_num(row[-1])}")
        return out


class Metrics:
    """What the middleware saw, and the worker's counters at the time of a scrape.

    Args:
        batcher: the server's :class:`~chattts.server.batcher.Worker` (read through
            ``snapshot()``).
        replica: the name in :data:`REPLICA_HEADER` and in every series' ``replica`` label.
    """

    def __init__(self, batcher: Worker, replica: Optional[str] = None) -> None:
        self.batcher = batcher
        self.replica = replica or default_replica()
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str], int] = {}
        self._latency = Histogram(LATENCY_BUCKETS)
        self._batch = Histogram(BATCH_BUCKETS)

    def observe(self, endpoint: str, status: int, seconds: float, batch_size: int = 0) -> None:
        """One answered request: its route, status, seconds to its last byte, and the size of
        the batch it ran in (0: it ran in none)."""
        with self._lock:
            key = (endpoint, str(status))
            self._requests[key] = self._requests.get(key, 0) + 1
            self._latency.observe((("endpoint", endpoint),), seconds)
            if batch_size > 0:
                self._batch.observe((), float(batch_size))

    def requests(self, endpoint: str, status: int) -> int:
        """How many answers ``endpoint`` gave with ``status``."""
        with self._lock:
            return self._requests.get((endpoint, str(status)), 0)

    def render(self) -> str:
        """The Prometheus text (format 0.0.4) of every series."""
        rep = f'replica="{_label(self.replica)}"'
        out: list[str] = []
        name = "chattts_server_http_requests_total"
        out += [f"# HELP {name} HTTP answers by endpoint and status", f"# TYPE {name} counter"]
        with self._lock:
            for (endpoint, status), n in sorted(self._requests.items()):
                out.append(f'{name}{{endpoint="{_label(endpoint)}",status="{status}",{rep}}} {n}')
            name = "chattts_server_http_request_duration_seconds"
            out += [f"# HELP {name} seconds to the last byte", f"# TYPE {name} histogram"]
            out += self._latency.lines(name, "," + rep)
            name = "chattts_server_batch_size"
            out += [f"# HELP {name} the batch each speech request ran in"]
            out += [f"# TYPE {name} histogram"]
            out += self._batch.lines(name, rep)
        for key, value in self.batcher.snapshot().items():
            if not isinstance(value, (bool, int, float)):
                continue
            name = f"chattts_server_{key}"
            kind = "counter" if key in _COUNTERS else "gauge"
            out.append(f"# HELP {name} worker: {_HELP.get(key, key.replace('_', ' '))}")
            out += [f"# TYPE {name} {kind}", f"{name}{{{rep}}} {_num(float(value))}"]
        return "\n".join(out) + "\n"


class MetricsMiddleware:
    """ASGI middleware: the replica header on every answer, and one observation per request."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        record: dict[str, Any] = {"status": 500, "job": None}
        scope[SCOPE_KEY] = record
        header = (REPLICA_HEADER.encode(), self.metrics.replica.encode())

        async def send_with_header(message: dict) -> None:
            if message["type"] == "http.response.start":
                record["status"] = int(message["status"])
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_header)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "other"
            job = record["job"]
            size = int(getattr(job, "batch_size", 0) or 0) if job is not None else 0
            self.metrics.observe(endpoint, record["status"], time.perf_counter() - start, size)


def note_job(request: Request, job: SpeechJob) -> None:
    """Tell the middleware which worker job a request became (for the batch-size histogram)."""
    record = request.scope.get(SCOPE_KEY)
    if record is not None:
        record["job"] = job


def install(app: FastAPI, service: SpeechService, replica: Optional[str] = None) -> Metrics:
    """Add the middleware (outermost) and ``GET /metrics`` to a FastAPI app of the server;
    the :class:`Metrics` is also ``app.state.metrics``."""
    from fastapi.responses import PlainTextResponse

    metrics = Metrics(service.worker, replica)
    app.state.metrics = metrics

    @app.get("/metrics", response_class=PlainTextResponse, response_model=None)
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return metrics


__all__ = [
    "BATCH_BUCKETS",
    "LATENCY_BUCKETS",
    "REPLICA_ENV",
    "REPLICA_HEADER",
    "Histogram",
    "Metrics",
    "MetricsMiddleware",
    "default_replica",
    "install",
    "note_job",
]
