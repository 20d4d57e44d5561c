"""Streamed speech: segments' audio, arriving in any order, assembled in order as it comes.

:class:`SpeechAssembler` is fed each segment's new samples (:meth:`~SpeechAssembler.feed`) and
told when a segment has ended (:meth:`~SpeechAssembler.end`); it returns
:class:`SpeechChunk` s in the plan's order: a segment's audio flows as soon as every segment
before it has ended (later ones wait in a buffer), trimmed at its edges as
:func:`~chattts.audio.speech.assemble` trims it, finished chunk by chunk
(:class:`~chattts.audio.finish_stream.StreamFinisher`: the segment's tempo, pitch and gain, then
the whole request's gain and loudness), with pauses, gaps and marks where ``assemble`` puts
them. Each chunk carries the segments that ended with it, with their times in the final audio,
so captions follow the audio (docs/captions.md, "Streaming").

The same assembler serves a local stream (:func:`stream_speech`) and the server's worker, which
feeds the segments of several requests from one batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

from ..audio.finish import Finish
from ..audio.finish_stream import StreamFinisher
from ..audio.speech import Bookmark, Mark, Pause, Segment, Speech, piece_finish
from ..generation.engine import Interrupt
from .core import Pipeline
from .requests import TRIM_THRESHOLD, Progress
from .speech import (
    DEFAULT_BATCH,
    PlanItem,
    SegmentPlan,
    SpeechRequest,
    segments_of,
    synthesize_segments,
)

_EMPTY = np.zeros(0, dtype=np.float32)


@dataclass(frozen=True)
class SpeechChunk:
    """The next stretch of finished speech.

    Attributes:
        audio: float32 (n,) new samples (possibly empty).
        segments: the segments that ended with these samples, times in seconds of the whole.
        marks: the marks reached.
    """

    audio: np.ndarray
    segments: tuple[Segment, ...] = ()
    marks: tuple[Mark, ...] = ()


class _EdgeTrim:
    """:func:`~chattts.pipeline.requests.trim_silence` on a stream: leading samples with
    |x| ≤ threshold are dropped, trailing ones held until louder samples follow."""

    def __init__(self, threshold: float = TRIM_THRESHOLD) -> None:
        self.threshold = threshold
        self.started = False
        self.held: list[np.ndarray] = []

    def write(self, x: np.ndarray) -> np.ndarray:
        loud = np.flatnonzero(np.abs(x) > self.threshold)
        if loud.size == 0:
            if self.started:
                self.held.append(x)
            return _EMPTY
        if not self.started:
            self.started, x, loud = True, x[loud[0] :], loud - loud[0]
        out = np.concatenate([*self.held, x[: loud[-1] + 1]])
        self.held = [x[loud[-1] + 1 :]]
        return out


class SpeechAssembler:
    """Assembles one request's segments in order (see the module docstring).

    Args:
        items: the request's plan (:func:`~chattts.pipeline.speech.plan_speech`).
        rate: sample rate in Hz.
        finish: the whole request's finishing.
        gap: seconds of silence between two segments with no pause between them.
    """

    def __init__(
        self, items: Sequence[PlanItem], rate: int, finish: Finish, gap: float = 0.0
    ) -> None:
        self.items, self.rate, self.finish = list(items), rate, finish
        self.gap = int(round(gap * rate))
        segs = [i for i, item in enumerate(self.items) if isinstance(item, SegmentPlan)]
        self._index_of = {pos: j for j, pos in enumerate(segs)}
        self._last_piece = segs[-1] if segs else -1
        self._buffers: list[list[np.ndarray]] = [[] for _ in segs]
        self._ended = [False] * len(segs)
        self._whole = StreamFinisher(rate, replace(finish, tempo=1.0, pitch=0.0))
        self._cursor, self._pos, self._pending_gap = 0, 0, False
        self._piece: Optional[tuple[_EdgeTrim, StreamFinisher, int]] = None
        self._out_segments: list[Segment] = []
        self._out_marks: list[Mark] = []
        self.closed = False

    @property
    def done(self) -> bool:
        """Every item has been assembled (call :meth:`close` for the last samples)."""
        return self._cursor >= len(self.items)

    def feed(self, index: int, samples: np.ndarray) -> SpeechChunk:
        """New samples of segment ``index`` (its position among the plan's segments)."""
        if samples.size:
            self._buffers[index].append(np.asarray(samples, dtype=np.float32))
        return self._advance()

    def end(self, index: int) -> SpeechChunk:
        """Segment ``index`` has no more samples."""
        self._ended[index] = True
        return self._advance()

    def close(self) -> SpeechChunk:
        """The last samples (the whole request's finishing holds some back)."""
        if self.closed:
            return SpeechChunk(_EMPTY)
        self.closed = True
        out = self._advance()
        tail = self._whole.close()
        return SpeechChunk(np.concatenate([out.audio, tail]), out.segments, out.marks)

    # ---- in order ---------------------------------------------------------------------------

    def _emit(self, samples: np.ndarray, parts: list[np.ndarray]) -> None:
        if samples.size:
            self._pos += samples.size
            parts.append(self._whole.write(samples))

    def _advance(self) -> SpeechChunk:
        parts: list[np.ndarray] = []
        while self._cursor < len(self.items):
            item = self.items[self._cursor]
            if isinstance(item, Pause):
                self._emit(np.zeros(int(round(item.seconds * self.rate)), np.float32), parts)
                self._pending_gap = False
            elif not self._gap_then(item, parts):
                break
            self._cursor += 1
        out = SpeechChunk(
            np.concatenate(parts) if parts else _EMPTY,
            tuple(self._out_segments),
            tuple(self._out_marks),
        )
        self._out_segments, self._out_marks = [], []
        return out

    def _gap_then(self, item: PlanItem, parts: list[np.ndarray]) -> bool:
        """A bookmark or a segment (after the gap owed before it); False while a segment still
        waits for samples."""
        if self._piece is None and self._pending_gap and self.gap:
            if self._cursor <= self._last_piece:
                self._emit(np.zeros(self.gap, np.float32), parts)
            self._pending_gap = False
        if isinstance(item, Bookmark):
            self._out_marks.append(Mark(str(item.name), self._pos / self.rate))
            return True
        return self._segment(item, parts)

    def _segment(self, item: SegmentPlan, parts: list[np.ndarray]) -> bool:
        j = self._index_of[self._cursor]
        if item.silent:  # heard as nothing: the pause it lasts, once it has ended
            if not self._ended[j]:
                return False
            heard = _EdgeTrim().write(np.concatenate([_EMPTY, *self._buffers[j]]))
            self._emit(np.zeros(item.finish.length(heard.size), np.float32), parts)
            self._buffers[j].clear()
            return True
        if self._piece is None:
            spec = piece_finish(item.finish, self.finish)
            self._piece = (_EdgeTrim(), StreamFinisher(self.rate, spec), self._pos)
        trim, fin, start = self._piece
        for chunk in self._buffers[j]:
            self._emit(fin.write(trim.write(chunk)), parts)
        self._buffers[j].clear()
        if not self._ended[j]:
            return False
        self._emit(fin.close(), parts)
        self._out_segments.append(
            Segment(start / self.rate, self._pos / self.rate, item.caption, item.voice)
        )
        self._piece, self._pending_gap = None, True
        return True


def stream_speech(
    pipeline: Pipeline,
    items: Sequence[PlanItem],
    request: SpeechRequest,
    *,
    batch: int = DEFAULT_BATCH,
    cancel: Optional[Interrupt] = None,
    progress: Optional[Progress] = None,
) -> Iterator[SpeechChunk]:
    """Synthesise a plan as a stream of :class:`SpeechChunk` s, in order."""
    asm = SpeechAssembler(items, pipeline.sample_rate, request.finish, request.gap)
    segments = segments_of(items)
    for index, samples, ended in synthesize_segments(
        pipeline, segments, batch=batch, cancel=cancel, progress=progress
    ):
        chunk = asm.end(index) if ended else asm.feed(index, samples)
        if chunk.audio.size or chunk.segments or chunk.marks:
            yield chunk
    yield asm.close()


def collect(chunks: Iterator[SpeechChunk], rate: int) -> Speech:
    """A stream's chunks as one :class:`~chattts.audio.speech.Speech`."""
    audio, segments, marks = [], [], []
    for chunk in chunks:
        audio.append(chunk.audio)
        segments += chunk.segments
        marks += chunk.marks
    wav = np.concatenate(audio) if audio else _EMPTY
    return Speech(wav, rate, tuple(segments), tuple(marks))


__all__ = ["SpeechAssembler", "SpeechChunk", "collect", "stream_speech"]
