"""The server's worker: the event loop's side of the continuous-batching scheduler.

A request becomes a :class:`SpeechJob`: its planned speech, a ticket of
:class:`chattts.pipeline.scheduler.SpeechScheduler` (one worker thread, the model's only user)
and an asyncio queue that receives, in order, the request's
:class:`~chattts.pipeline.assembler.SpeechChunk` s, then :data:`DONE` (or a
:class:`~chattts.errors.JobFailed`). A request's segments join the running generation at the
next step and leave as they end, so its first audio comes after its own prefill and first
window, whatever else is running (docs/server.md, "Scheduling"). A client that goes away cancels
its job: its rows leave at the next step, freeing their slots, and the other requests go on
untouched.

:class:`Worker` owns the scheduler and refuses jobs (:class:`QueueFullError`, HTTP 429) when
too many segments wait.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Union

from ..errors import JobFailed, QueueFullError
from ..pipeline import Pipeline
from ..pipeline.assembler import SpeechChunk
from ..pipeline.scheduler import DONE, LIVE, SchedulerStats, SpeechScheduler, Ticket
from ..pipeline.speech import PlanItem, SpeechRequest

logger = logging.getLogger("chattts.server")

#: What a job's queue holds.
JobItem = Union[SpeechChunk, JobFailed, object]


class SpeechJob:
    """One request: its ticket in the scheduler and where its outputs go (an asyncio queue of
    the loop that made it).

    Args:
        items: the planned speech (:func:`chattts.pipeline.speech.plan_speech`).
        request: its request (finishing, gap).
        priority: :data:`~chattts.pipeline.scheduler.LIVE` or ``BACKGROUND``.
    """

    def __init__(self, items: list[PlanItem], request: SpeechRequest, priority: int = LIVE) -> None:
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[JobItem] = asyncio.Queue()
        self.ticket = Ticket(items, request, self.put, priority)
        self.samples = 0
        self.batch_size = 0  # rows generating when the job was queued (metrics)
        self.done = threading.Event()
        self._steps = lambda: 0  # the scheduler's step count (set by Worker.submit)

    @property
    def cancelled(self) -> bool:
        return self.ticket.cancel.is_set()

    def cancel(self) -> None:
        """Stop this request (its client went away); idempotent, thread-safe, and a no-op
        once the request is complete."""
        if not self.cancelled and not self.done.is_set():
            self.ticket.cancel_step = self._steps()
            self.ticket.cancel.set()

    def put(self, item: JobItem) -> None:
        """From the worker thread: the next output."""
        if isinstance(item, SpeechChunk):
            self.samples += item.audio.size
        elif item is DONE or isinstance(item, JobFailed):
            self.done.set()
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the event loop is closed: nobody is listening any more
            self.cancel()

    async def get(self) -> JobItem:
        """The next chunk, :data:`DONE`, or a :class:`JobFailed`."""
        return await self.queue.get()


class Worker:
    """The scheduler of the server's requests (see the module docstring).

    Args:
        pipeline: the loaded pipeline (used by the worker thread only).
        max_batch: rows generated together.
        max_queue: most segments waiting for a slot; more jobs are refused (HTTP 429).
        max_new_token: the most code steps of a segment.
        continuous: continuous batching (False: a batch runs to its end, for comparison).
        batch_wait_ms: with static batching, how long a batch waits for more requests.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        max_batch: int = 8,
        max_queue: int = 256,
        max_new_token: int = 2048,
        continuous: bool = True,
        batch_wait_ms: float = 20.0,
    ) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be ≥ 1")
        self.scheduler = SpeechScheduler(
            pipeline,
            max_batch,
            max_new_token,
            continuous=continuous,
            batch_wait=batch_wait_ms / 1000.0,
        )
        self.max_batch, self.max_queue = max_batch, max_queue

    @property
    def stats(self) -> SchedulerStats:
        return self.scheduler.stats

    @property
    def alive(self) -> bool:
        """True while the worker thread runs (from :meth:`start` or the first
        :meth:`submit` until :meth:`stop`, or until it dies)."""
        return self.scheduler.alive

    @property
    def queued(self) -> int:
        return self.scheduler.queued

    def start(self) -> None:
        self.scheduler.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel what is queued and running, and end the thread."""
        self.scheduler.stop(timeout)

    def submit(self, job: SpeechJob) -> None:
        """Queue a job (from the event loop). Raises QueueFullError when too many wait."""
        if self.scheduler.queued >= self.max_queue:
            raise QueueFullError(f"{self.max_queue} segments are already waiting")
        job._steps = lambda: self.scheduler.stats.steps
        job.batch_size = self.scheduler.running + 1
        self.scheduler.submit(job.ticket)

    def snapshot(self) -> dict[str, object]:
        """Counters, rows waiting and running (``GET /health``)."""
        out = self.scheduler.snapshot()
        out.update(busy=self.scheduler.running > 0, max_queue=self.max_queue)
        return out


__all__ = ["DONE", "JobFailed", "QueueFullError", "SpeechJob", "Worker"]
