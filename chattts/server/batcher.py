"""The server's inference worker: one thread that batches requests arriving together.

Requests (:class:`SpeechJob`) are queued from the event loop. The worker takes the first one,
waits up to ``batch_wait_ms`` for more (at most ``max_batch``; requests already queued join at
once) and synthesises them as one batch of :class:`chattts.pipeline.Utterance` objects with
:meth:`chattts.pipeline.Pipeline.synthesize`, streaming: every item's new audio is handed to its
request's asyncio queue as soon as it is decoded. Each item has its own seed, so a request gives
the same audio whatever it is batched with.

A request whose client goes away is cancelled: its own flag ends its refine pass or its item
within one generation step (and, when every item of the batch is cancelled, the batch itself),
freeing the worker; the other requests of the batch go on untouched. When a batch of several
requests fails, each is run again alone, so that one bad request fails only itself.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from ..errors import EmptyInputError, JobFailed, QueueFullError
from ..generation.engine import Interrupt
from ..params import InferCodeParams, RefineTextParams
from ..pipeline import Utterance

if TYPE_CHECKING:
    from ..chat import Chat

logger = logging.getLogger("chattts.server")

#: Marks the end of a request's audio in its queue.
DONE = object()


class CancelFlag(Interrupt):
    """A request's cancel flag; it notes the generation step of its batch when it was set.

    ``at_step``: the batch's step count when the flag was set (None: set before its batch
    ran).
    """

    def __init__(self) -> None:
        super().__init__()
        self.at_step: Optional[int] = None
        self.clock: Optional[Callable[[], int]] = None
        self._lock = threading.Lock()

    def set(self) -> None:
        with self._lock:
            if not self.is_set() and self.clock is not None:
                self.at_step = self.clock()
            super().set()


@dataclass
class SpeechJob:
    """One request: text, code-pass parameters, optional refine, and where its audio goes.

    ``text`` is synthesised as given (normalised by the worker unless ``refine`` refines it).
    """

    text: str
    params: InferCodeParams
    refine: Optional[RefineTextParams] = None
    loop: Optional[asyncio.AbstractEventLoop] = None
    flag: CancelFlag = field(default_factory=CancelFlag)
    queue: Optional[asyncio.Queue] = None
    samples: int = 0
    batch_size: int = 0
    done: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        if self.queue is None:
            self.queue = asyncio.Queue()

    @property
    def cancelled(self) -> bool:
        return self.flag.is_set()

    def cancel(self) -> None:
        """Stop this request (its client went away); idempotent, thread-safe, and a no-op
        once the worker has finished the request."""
        if not self.cancelled and not self.done.is_set():
            self.flag.set()

    def put(self, item: Any) -> None:
        """From the worker thread: a float32 chunk (n,), :data:`DONE` or a :class:`JobFailed`."""
        if isinstance(item, np.ndarray):
            self.samples += item.size
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the event loop is closed: nobody is listening any more
            self.cancel()

    async def get(self) -> Any:
        """The next chunk, :data:`DONE`, or a :class:`JobFailed`."""
        return await self.queue.get()


@dataclass
class BatchStats:
    """Counters of the worker (``GET /health`` shows them)."""

    requests: int = 0
    completed: int = 0
    cancelled: int = 0
    failed: int = 0
    batches: int = 0
    batched_requests: int = 0  # requests that ran in a batch of two or more
    largest_batch: int = 0
    audio_seconds: float = 0.0
    steps: int = 0  # generation steps of the code pass, all batches
    # steps that the last cancelled request's batch ran after its cancel (0: cancelled before
    # or between steps; 1: the step under way when it was cancelled)
    last_cancel_steps: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Batcher:
    """The worker thread. ``submit`` jobs from the event loop; ``stop`` ends the thread.

    Args:
        chat: a loaded :class:`chattts.Chat`, used by this thread only.
        max_batch: most requests synthesised together.
        batch_wait_ms: how long the first request of a batch waits for others.
        max_queue: most requests waiting; more are refused (HTTP 429).
    """

    def __init__(
        self, chat: Chat, max_batch: int = 8, batch_wait_ms: float = 20.0, max_queue: int = 256
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be ≥ 1")
        if batch_wait_ms < 0:
            raise ValueError("batch_wait_ms must be ≥ 0")
        self.chat = chat
        self.max_batch = max_batch
        self.batch_wait = batch_wait_ms / 1000.0
        self.max_queue = max_queue
        self.stats = BatchStats()
        self.busy = False
        self._queue: queue.Queue = queue.Queue()
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()
        self._rate = int(chat.config.sample_rate)
        self._step = 0  # steps of the batch under way
        self._running: list[SpeechJob] = []

    # ---- control ------------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="chattts-server-worker", daemon=True
                )
                self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel what is queued and running, and end the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is None:
            return
        for job in list(self._running):  # the batch under way ends within one step
            job.cancel()
        pending = self._drain()
        for job in pending:
            job.cancel()
            job.put(JobFailed("the server is shutting down"))
        self._queue.put(None)
        thread.join(timeout)

    @property
    def alive(self) -> bool:
        """True while the worker thread runs: from :meth:`start` (or the first
        :meth:`submit`) until :meth:`stop`, or until the thread dies."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def submit(self, job: SpeechJob) -> None:
        """Queue a job (from any thread). Raises QueueFullError when too many wait."""
        if self._queue.qsize() >= self.max_queue:
            raise QueueFullError(f"{self.max_queue} requests are already waiting")
        self.start()
        with self._lock:
            self.stats.requests += 1
        self._queue.put(job)

    def snapshot(self) -> dict[str, Any]:
        """Counters, queue length and whether a batch is running."""
        out = self.stats.as_dict()
        out.update(
            queued=self.queued,
            busy=self.busy,
            max_batch=self.max_batch,
            batch_wait_ms=self.batch_wait * 1000.0,
        )
        return out

    # ---- the thread ---------------------------------------------------------------------

    def _drain(self) -> list[SpeechJob]:
        jobs = []
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return jobs
            if job is not None:
                jobs.append(job)

    def _collect(self, first: SpeechJob) -> tuple[list[SpeechJob], bool]:
        """``first`` and the jobs arriving within the wait; (jobs, stop asked)."""
        jobs = [first]
        deadline = time.monotonic() + self.batch_wait
        while len(jobs) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                job = (
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else (self._queue.get_nowait())
                )
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            jobs.append(job)
        return jobs, False

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs, stop = self._collect(first)
            live = [j for j in jobs if not j.cancelled]
            for job in jobs:
                if job.cancelled:
                    self._finish(job, "cancelled")
                    job.put(DONE)
            if live:
                self.busy, self._running = True, live
                try:
                    self._run(live)
                finally:
                    self.busy, self._running = False, []
            if stop:
                return

    def _finish(self, job: SpeechJob, how: str) -> None:
        with self._lock:
            if how == "cancelled":
                self.stats.cancelled += 1
                at = job.flag.at_step
                self.stats.last_cancel_steps = 0 if at is None else self._step - at
            elif how == "failed":
                self.stats.failed += 1
            else:
                self.stats.completed += 1
                self.stats.audio_seconds += job.samples / self._rate
        job.done.set()

    def _clock(self) -> int:
        return self._step

    def _progress(self, step: int, total: int) -> None:
        with self._lock:
            self.stats.steps += step - self._step
        self._step = step

    def _run(self, jobs: list[SpeechJob]) -> None:
        n = len(jobs)
        with self._lock:
            self.stats.batches += 1
            self.stats.largest_batch = max(self.stats.largest_batch, n)
            if n > 1:
                self.stats.batched_requests += n
        self._step = 0
        for job in jobs:
            job.batch_size = n
            job.flag.clock = self._clock
        logger.info("synthesising a batch of %d request%s", n, "s" if n > 1 else "")
        try:
            self._synthesize(jobs)
        except Exception as e:  # a failure of the model must not kill the worker
            started = [job for job in jobs if job.samples]
            if n > 1 and not started:
                logger.warning("a batch of %d failed (%s): running each request alone", n, e)
                for job in jobs:
                    self._run([job])
                return
            if isinstance(e, EmptyInputError):  # the client's text: a 400, not a failure
                logger.info("request refused: %s", e)
                message = str(e)
            else:
                logger.exception("synthesis failed")
                message = f"synthesis failed: {type(e).__name__}: {e}"
            for job in jobs:
                self._finish(job, "failed")
                job.put(JobFailed(message, cause=e))
            return
        for job in jobs:  # finished before DONE is seen, so a late cancel is a no-op
            self._finish(job, "cancelled" if job.cancelled else "completed")
            job.put(DONE)

    def _synthesize(self, jobs: list[SpeechJob]) -> None:
        """Stream every job's audio to its queue (each refined alone first when asked)."""
        items = [Utterance(job.text, job.params, job.refine, job.flag) for job in jobs]
        chunks = self.chat.pipeline.synthesize(items, stream=True, progress=self._progress)
        for parts in chunks:
            for job, part in zip(jobs, parts, strict=True):
                if part.size and not job.cancelled:
                    job.put(part)
