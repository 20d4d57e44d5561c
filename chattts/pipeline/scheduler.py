"""Continuous batching of speech requests: a worker thread that runs every request's segments
as rows of one generation, joining at step boundaries and leaving as they end.

A :class:`Ticket` is one request: its planned speech (:func:`~.speech.plan_speech`), its
:class:`~.assembler.SpeechAssembler` and a sink that receives, in order, each
:class:`~.assembler.SpeechChunk`, then :data:`DONE` (or a :class:`~chattts.errors.JobFailed`).
Each segment is a row: its refine pass (when asked) in the refine run, then its code pass in
the code run (:meth:`chattts.generation.engine.Engine.open_run`), both of ``max_batch`` rows.
Between steps the worker admits waiting rows into free slots — live requests first, then
background ones (narration jobs), first come first served, the segments of a request in
order — and decodes the windows that are ready (:class:`~chattts.decode.stream.RowWindows`),
so a request's first audio comes after its own prefill and first window, whatever is running.
A live row that finds no free slot takes one from a background row, which starts again later
(its seed makes it draw the same tokens). A cancelled request frees its rows at the next step.

``continuous=False`` admits rows only into an empty run (static batching, for comparison).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Optional, Union

import torch

from ..decode.stream import RowWindows, Window, decode_windows
from ..errors import JobFailed
from ..generation.engine import Interrupt
from ..generation.run import RowOutput, Run
from .assembler import SpeechAssembler, SpeechChunk
from .core import Pipeline
from .passes import item_sampling
from .speech import PlanItem, SpeechRequest, segments_of

logger = logging.getLogger("chattts")

#: Marks the end of a ticket's output.
DONE = object()
#: Priorities: live requests before background work.
LIVE, BACKGROUND = 0, 1
#: Positions a row's prompt may take, besides its ``max_new_token`` steps.
PROMPT_POSITIONS = 512

#: What a ticket's sink receives.
Output = Union[SpeechChunk, JobFailed, object]


@dataclass(eq=False)
class Ticket:
    """One request in the scheduler.

    Attributes:
        items: the planned speech.
        request: its request (finishing, gap).
        sink: called from the worker thread with each output, in order (see the module
            docstring); it must not block.
        priority: :data:`LIVE` or :data:`BACKGROUND`.
        cancel: set it to stop the request: its rows leave at the next step.
    """

    items: list[PlanItem]
    request: SpeechRequest
    sink: Callable[[Output], None]
    priority: int = LIVE
    cancel: Interrupt = field(default_factory=Interrupt)
    samples: int = 0
    finished: bool = False
    #: the scheduler's step count when ``cancel`` was set (for the statistics), if known
    cancel_step: Optional[int] = None

    def __post_init__(self) -> None:
        self.segments = segments_of(self.items)
        self.ended = [False] * len(self.segments)
        self.assembler: Optional[SpeechAssembler] = None


@dataclass(eq=False)
class _Row:
    """A segment of a ticket in a run."""

    ticket: Ticket
    index: int
    #: the text the code pass reads when not the segment's own (its refined text)
    text: Optional[str] = None
    windows: Optional[RowWindows] = None
    output: Optional[RowOutput] = None


@dataclass
class SchedulerStats:
    """Counters of the worker (``GET /health`` shows them)."""

    requests: int = 0
    completed: int = 0
    cancelled: int = 0
    failed: int = 0
    rows: int = 0  # segments admitted into the code run
    preempted: int = 0  # background rows that gave their slot to a live one
    batches: int = 0  # code runs opened (a run lasts while it has rows)
    largest_batch: int = 0
    steps: int = 0
    audio_seconds: float = 0.0
    # steps run between the last cancel and its rows leaving (0: before or between steps)
    last_cancel_steps: int = 0

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


class SpeechScheduler:
    """The worker (see the module docstring). ``submit`` tickets from any thread.

    Args:
        pipeline: the loaded pipeline (used by the worker thread only).
        max_batch: rows generated together, in each run.
        max_new_token: the most code steps of a segment (sizes each row's cache).
        continuous: admit rows at every step (False: only into an empty run).
        batch_wait: with static batching, seconds an empty run waits for more rows once the
            first arrived (up to ``max_batch``).
        autostart: start the worker thread on the first :meth:`submit` (False: the caller
            drives the scheduler with :meth:`tick`, e.g. a test, step by step).
    """

    def __init__(
        self,
        pipeline: Pipeline,
        max_batch: int = 8,
        max_new_token: int = 2048,
        continuous: bool = True,
        batch_wait: float = 0.0,
        autostart: bool = True,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be ≥ 1")
        self.pipeline = pipeline
        self.max_batch, self.continuous, self.autostart = max_batch, continuous, autostart
        self.batch_wait = batch_wait
        self._first_wait: Optional[float] = None  # when the oldest waiting row arrived
        self.capacity = PROMPT_POSITIONS + max_new_token
        self.stats = SchedulerStats()
        self._waiting: dict[int, collections.deque[_Row]] = {
            LIVE: collections.deque(),
            1: collections.deque(),
        }
        self._refining: collections.deque[_Row] = collections.deque()
        self._lock = threading.Condition()
        self._thread: Optional[threading.Thread] = None
        self._stop = False
        self._code: Optional[Run] = None
        self._refine: Optional[Run] = None
        self._rows: dict[tuple[str, int], _Row] = {}  # (run, slot) -> row

    # ---- control ------------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stop = False
                self._thread = threading.Thread(
                    target=self._loop, name="chattts-scheduler", daemon=True
                )
                self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel every request and end the thread."""
        with self._lock:
            thread, self._stop = self._thread, True
            self._lock.notify_all()
        if thread is not None:
            thread.join(timeout)
        self._thread = None

    @property
    def alive(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    @property
    def queued(self) -> int:
        """Segments waiting for a slot."""
        return sum(len(q) for q in self._waiting.values()) + len(self._refining)

    @property
    def running(self) -> int:
        """Rows in the runs."""
        return len(self._rows)

    def submit(self, ticket: Ticket) -> None:
        """Queue a request (its segments wait for slots, in order)."""
        rate = self.pipeline.sample_rate
        ticket.assembler = SpeechAssembler(
            ticket.items, rate, ticket.request.finish, ticket.request.gap
        )
        with self._lock:
            self.stats.requests += 1
            for i, seg in enumerate(ticket.segments):
                row = _Row(ticket, i)
                (
                    self._refining if seg.refine is not None else self._waiting[ticket.priority]
                ).append(row)
            self._lock.notify_all()
        if self.autostart:
            self.start()
        if not ticket.segments:  # nothing to generate: pauses and marks only
            self._finish(ticket)

    def snapshot(self) -> dict[str, object]:
        out = self.stats.as_dict()
        out.update(queued=self.queued, running=self.running, max_batch=self.max_batch)
        out.update(scheduling="continuous" if self.continuous else "static")
        return out

    # ---- the worker -------------------------------------------------------------------------

    def _loop(self) -> None:
        try:
            while True:
                with self._lock:
                    while not self._stop and not self._has_work():
                        self._close_idle_runs()
                        self._lock.wait(0.5)
                    if self._stop:
                        return
                self.tick()
        finally:
            self._shutdown()

    def tick(self) -> None:
        """One round of the worker: admit waiting rows, then one step of each run."""
        self._admit_refine()
        self._admit_code()
        self._step("refine")
        self._step("code")

    def _has_work(self) -> bool:
        return bool(self._rows or self.queued)

    def _close_idle_runs(self) -> None:
        """A run with no rows gives its cache back (it is opened again on demand)."""
        for name in ("code", "refine"):
            run = getattr(self, f"_{name}")
            if run is not None and not run.active:
                run.close()
                setattr(self, f"_{name}", None)

    def _run(self, name: str) -> Run:
        run = getattr(self, f"_{name}")
        if run is None:
            engine = self.pipeline.models.engine
            if name == "code":
                heads = engine.code_heads()
            else:
                heads = engine.refine_heads(self.pipeline.models.tokenizer.eos_refine_id)
            run = engine.open_run(heads, self.max_batch, self.capacity)
            setattr(self, f"_{name}", run)
            if name == "code":
                self.stats.batches += 1
        return run

    def _next(self, queue: collections.deque[_Row]) -> Optional[_Row]:
        while queue:
            row = queue[0]
            if not (row.ticket.finished or row.ticket.cancel.is_set()):
                return row
            queue.popleft()
            self._end_cancelled(row.ticket)
        return None

    def _admit_code(self) -> None:
        run = self._code
        if not self.continuous and not self._static_batch_ready(run):
            return  # static batching: a batch runs to its end, then waits for the next one
        with self._lock:
            while True:
                queue = self._waiting[LIVE] if self._next(self._waiting[LIVE]) else self._waiting[1]
                row = self._next(queue)
                if row is None:
                    return
                run = self._run("code")
                if run.free == 0 and not (row.ticket.priority == LIVE and self._preempt(run)):
                    return
                queue.popleft()
                self._add_code(run, row)

    def _static_batch_ready(self, run: Optional[Run]) -> bool:
        """Static batching: the run is empty, and ``max_batch`` rows wait or the first of them
        has waited ``batch_wait`` seconds."""
        if run is not None and run.active:
            return False
        waiting = len(self._waiting[LIVE]) + len(self._waiting[BACKGROUND])
        if waiting == 0:
            self._first_wait = None
            return False
        now = time.monotonic()
        if self._first_wait is None:
            self._first_wait = now
        if waiting < self.max_batch and now - self._first_wait < self.batch_wait:
            time.sleep(min(0.005, self.batch_wait))
            return False
        self._first_wait = None
        return True

    def _add_code(self, run: Run, row: _Row) -> None:
        seg = row.ticket.segments[row.index]
        text = getattr(row, "text", None) or seg.text
        try:
            embeds, mask = self.pipeline.passes.code_inputs([text], [seg.params])
            p = seg.params
            slot = run.add(
                embeds[0][mask[0].bool()], item_sampling(p, p.manual_seed), row.ticket.cancel
            )
        except Exception as e:  # a bad prompt fails its own request only
            self._fail(row.ticket, e)
            return
        row.output = run.output(slot)
        if row.ticket.priority == LIVE:
            params = seg.params
            hop = self.pipeline.models.audio.hop_length
            row.windows = RowWindows(
                params.stream_first_batch,
                params.stream_batch,
                params.stream_lookahead,
                params.stream_context,
                hop,
            )
        self._rows[("code", slot)] = row
        self.stats.rows += 1
        self.stats.largest_batch = max(self.stats.largest_batch, len(run.active))

    def _preempt(self, run: Run) -> bool:
        """Free a slot held by a background row (it waits again, from its start)."""
        for (name, slot), row in list(self._rows.items()):
            if name == "code" and row.ticket.priority != LIVE:
                run.remove(slot)
                del self._rows[(name, slot)]
                self._waiting[row.ticket.priority].appendleft(_Row(row.ticket, row.index, row.text))
                self.stats.preempted += 1
                return True
        return False

    def _admit_refine(self) -> None:
        with self._lock:
            while self._next(self._refining) is not None:
                run = self._run("refine")
                if run.free == 0:
                    return
                row = self._refining.popleft()
                seg = row.ticket.segments[row.index]
                try:
                    embeds, mask = self.pipeline.passes.refine_inputs([seg.text], seg.refine.prompt)
                    r = seg.refine
                    item = item_sampling(r, r.manual_seed)
                    slot = run.add(embeds[0][mask[0].bool()], item, row.ticket.cancel)
                except Exception as e:
                    self._fail(row.ticket, e)
                    continue
                row.output = run.output(slot)
                self._rows[("refine", slot)] = row

    def _step(self, name: str) -> None:
        run = getattr(self, f"_{name}")
        if run is None or not run.active:
            return
        try:
            events = run.step()
        except Exception as e:  # a failure of the model must not kill the worker
            logger.exception("the %s pass failed", name)
            for (n, _), row in list(self._rows.items()):
                if n == name:
                    self._fail(row.ticket, e)
            run.close()
            setattr(self, f"_{name}", None)
            self._rows = {k: v for k, v in self._rows.items() if k[0] != name}
            return
        if name == "refine":
            self._refined([e for e in events if e.finished])
        else:
            self._decoded(events)
            self.stats.steps += 1  # after: a cancel seen at this step's start ran 0 steps

    def _refined(self, events: list) -> None:
        """Refined rows wait for the code run with their new text (first in line)."""
        for ev in events:
            row = self._rows.pop(("refine", ev.slot))
            if row.ticket.finished or ev.output.cancelled:
                self._end_cancelled(row.ticket)
                continue
            tokens = ev.output.tokens[: ev.output.length, 0].tolist()
            refined = self.pipeline.passes.refined_texts([tokens])[0]
            nxt = _Row(row.ticket, row.index, refined if refined.strip() else None)
            with self._lock:
                self._waiting[row.ticket.priority].appendleft(nxt)

    def _decoded(self, events: list) -> None:
        """Decode the windows that are ready, hand each request its audio in order."""
        jobs: list[tuple[torch.Tensor, Window]] = []
        owners: list[_Row] = []
        ended: list[_Row] = []
        for ev in events:
            row = self._rows.get(("code", ev.slot))
            if row is None:
                continue
            out = ev.output
            if ev.finished:
                del self._rows[("code", ev.slot)]
                ended.append(row)
            if row.ticket.finished or out.cancelled:
                continue
            for w in self._windows(row, out, ev.finished):
                jobs.append((out.hiddens, w))
                owners.append(row)
        wavs = decode_windows(self.pipeline.models.audio, jobs) if jobs else []
        for row, wav in zip(owners, wavs, strict=True):
            row.ticket.samples += wav.size
            self._emit(row.ticket, row.ticket.assembler.feed(row.index, wav))
        for row in ended:
            self._ended(row)

    def _windows(self, row: _Row, out: RowOutput, finished: bool) -> list[Window]:
        if row.windows is not None:
            return row.windows.ready(out.steps, out.length, finished)
        if not finished or out.length == 0:  # background rows decode whole, once ended
            return []
        hop = self.pipeline.models.audio.hop_length
        return [Window(0, out.length, 0, out.length, (2 * out.length - 1) * hop)]

    def _ended(self, row: _Row) -> None:
        ticket = row.ticket
        if ticket.finished:
            return
        if ticket.cancel.is_set():
            self._end_cancelled(ticket)
            return
        ticket.ended[row.index] = True
        self._emit(ticket, ticket.assembler.end(row.index))
        if all(ticket.ended):
            self._finish(ticket)

    # ---- outputs ------------------------------------------------------------------------------

    def _emit(self, ticket: Ticket, chunk: SpeechChunk) -> None:
        if chunk.audio.size or chunk.segments or chunk.marks:
            ticket.sink(chunk)

    def _finish(self, ticket: Ticket) -> None:
        self._emit(ticket, ticket.assembler.close())
        ticket.finished = True
        self.stats.completed += 1
        self.stats.audio_seconds += ticket.samples / self.pipeline.sample_rate
        ticket.sink(DONE)

    def _end_cancelled(self, ticket: Ticket) -> None:
        if not ticket.finished:
            ticket.finished = True
            self.stats.cancelled += 1
            at = ticket.cancel_step
            self.stats.last_cancel_steps = 0 if at is None else self.stats.steps - at
            ticket.sink(DONE)

    def _fail(self, ticket: Ticket, error: BaseException) -> None:
        if not ticket.finished:
            ticket.finished = True
            self.stats.failed += 1
            ticket.sink(JobFailed(f"synthesis failed: {type(error).__name__}: {error}"))

    def _shutdown(self) -> None:
        """The thread ends: every request still open fails (the server is shutting down)."""
        queues = (*self._waiting.values(), self._refining)
        pending = [r.ticket for q in queues for r in q] + [r.ticket for r in self._rows.values()]
        for ticket in {id(t): t for t in pending}.values():
            if not ticket.finished:
                ticket.finished = True
                ticket.sink(JobFailed("the server is shutting down"))
        for q in queues:
            q.clear()
        self._rows.clear()
        for name in ("code", "refine"):
            run = getattr(self, f"_{name}")
            if run is not None:
                run.close()
                setattr(self, f"_{name}", None)


__all__ = [
    "BACKGROUND",
    "DONE",
    "LIVE",
    "SchedulerStats",
    "SpeechScheduler",
    "Ticket",
]
