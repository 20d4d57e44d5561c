"""A narration's audio drawn by the server's scheduler, at background priority
(docs/narrate.md, "The job API").

:func:`background_synthesize` gives a :class:`~chattts.narrate.render.Synthesize` whose
segments are ``BACKGROUND`` tickets of the server's continuous-batching scheduler: live
requests are admitted before them and take one of their slots when none is free (the row
starts again later and, seeded, draws the same tokens), so a running job delays a live
request's first audio by at most the generation step under way.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Optional

import numpy as np

from ..errors import JobFailed
from ..generation.engine import Interrupt
from ..params import InferCodeParams, RefineTextParams
from ..pipeline.assembler import SpeechChunk
from ..pipeline.core import speakable
from ..pipeline.scheduler import BACKGROUND, DONE, Output, SpeechScheduler, Ticket
from ..pipeline.speech import SegmentPlan, SpeechRequest

if TYPE_CHECKING:
    from ..narrate.render import Synthesize

#: Seconds between looks at a cancelled batch whose scheduler may have stopped.
WATCH_S = 0.5


class _Sink:
    """A segment's ticket output: its audio chunks, then DONE or a failure."""

    def __init__(self) -> None:
        self.chunks: list[np.ndarray] = []
        self.error: Optional[JobFailed] = None
        self.done = threading.Event()

    def __call__(self, item: Output) -> None:
        if isinstance(item, SpeechChunk):
            self.chunks.append(item.audio)
        elif isinstance(item, JobFailed):
            self.error = item
            self.done.set()
        elif item is DONE:
            self.done.set()


def background_synthesize(scheduler: SpeechScheduler) -> Synthesize:
    """A narration's :class:`~chattts.narrate.render.Synthesize` over the server's scheduler:
    each segment becomes a ``BACKGROUND`` ticket (its text normalised here, as
    ``Chat.synthesize`` does), and the call waits until all of them end. A segment's audio
    is its ticket's, trimmed at the edges as the narration trims it."""
    pipeline = scheduler.pipeline

    def synthesize(
        texts: Sequence[str],
        params: Sequence[InferCodeParams],
        refine: Optional[RefineTextParams],
        normalize: bool,
        cancel: Interrupt,
    ) -> list[np.ndarray]:
        plans = [
            SegmentPlan(speakable(pipeline.normalizer(t, normalize), t), t, None, p, refine)
            for t, p in zip(texts, params, strict=True)
        ]
        sinks = [_Sink() for _ in plans]
        for plan, sink in zip(plans, sinks, strict=True):
            request = SpeechRequest(plan.text, captions=False)
            scheduler.submit(Ticket([plan], request, sink, BACKGROUND, cancel))
        for sink in sinks:
            while not sink.done.wait(WATCH_S):
                if cancel.is_set() and not scheduler.alive:
                    break  # nobody will end it
        failed = next((s.error for s in sinks if s.error is not None), None)
        if failed is not None and not cancel.is_set():
            raise failed
        return [np.concatenate(s.chunks) if s.chunks else np.zeros(0, np.float32) for s in sinks]

    return synthesize


__all__ = ["background_synthesize"]
