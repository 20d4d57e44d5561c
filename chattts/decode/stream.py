"""Streaming: decode only new steps, with left context and lookahead, so chunks are final.

A row in continuous batching has its own clock (:class:`RowWindows`); the items of a static
batch share one (:class:`BatchWindows`); both decode with :func:`decode_windows`.

A chunk covers code steps [s, e) and the samples [s · 2·hop, e · 2·hop) of the full decode.
It is decoded from the window of steps [s − context, e + lookahead): the convolutional Decoder
(or DVAE) and Vocos see the neighbours they need, and the chunk's samples are cut out of the
window's output. With context and lookahead covering the decoders' receptive field the chunks
equal the full decode; the defaults trade a little of that for latency (ENGINE_NOTES.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from ..generation.engine import GenerationState
from ..params import InferCodeParams
from .decoder import AudioDecoder


@dataclass(frozen=True)
class Window:
    """A chunk of one row: code steps [start, end) cut from the decode of steps [a, b).

    ``cut``: for a row that has ended, its last sample ((2·length − 1)·hop), else None.
    """

    a: int
    b: int
    start: int
    end: int
    cut: Optional[int] = None


class RowWindows:
    """The chunks of one growing row: a chunk is ready once ``lookahead`` steps past its end
    exist, or when the row has ended (see the module docstring).

    Args:
        first: steps of the first chunk; ``size``: steps of every later chunk.
        lookahead: steps decoded past a chunk's end (≥ 1); ``context``: steps before its start.
        hop: Vocos' hop (a code step is 2·hop samples).
    """

    def __init__(self, first: int, size: int, lookahead: int, context: int, hop: int) -> None:
        if first < 1 or size < 1:
            raise ValueError("stream_first_batch and stream_batch must be ≥ 1")
        if lookahead < 1 or context < 0:
            raise ValueError("stream_lookahead must be ≥ 1 and stream_context ≥ 0")
        self.first, self.size, self.lookahead, self.context = first, size, lookahead, context
        self.hop = hop
        self.start = 0  # first step not yet emitted

    def ready(self, steps: int, length: int, finished: bool) -> list[Window]:
        """The windows that can be decoded now: ``steps`` drawn so far, ``length`` of them
        before EOS, ``finished`` once the row has ended."""
        avail = length if finished else steps
        out: list[Window] = []
        while True:
            s = self.start
            e = s + (self.first if s == 0 else self.size)
            if finished:
                if s >= avail:
                    return out
                e = min(e, avail)
            elif avail < e + self.lookahead:
                return out
            cut = max(0, (2 * length - 1) * self.hop) if finished else None
            out.append(Window(max(0, s - self.context), min(e + self.lookahead, avail), s, e, cut))
            self.start = e


def decode_windows(
    audio: AudioDecoder, jobs: list[tuple[torch.Tensor, Window]], use_decoder: bool = True
) -> list[np.ndarray]:
    """The samples of each (features (S, ·) of a row, window) pair, decoded together where the
    windows have the same length: float32 arrays, in order."""
    per_step = audio.samples_per_step
    out: list[np.ndarray] = [np.zeros(0, dtype=np.float32)] * len(jobs)
    by_len: dict[int, list[int]] = {}
    for k, (_, w) in enumerate(jobs):
        by_len.setdefault(w.b - w.a, []).append(k)
    for n, ks in by_len.items():
        if n <= 0:
            continue
        feats = torch.stack([jobs[k][0][jobs[k][1].a : jobs[k][1].b] for k in ks])
        with torch.inference_mode():
            wav = audio.waveform(feats, use_decoder).cpu().numpy()
        for j, k in enumerate(ks):
            w = jobs[k][1]
            off = w.a * per_step
            lo, hi = w.start * per_step, w.end * per_step
            if w.cut is not None:
                hi = min(hi, w.cut)
            out[k] = wav[j, lo - off : max(hi, lo) - off].copy()
    return out


class BatchWindows:
    """The chunks of a static batch, in lockstep: chunk [s, e) of every item is emitted once
    every unfinished item has ``lookahead`` steps past ``e`` (or the batch has ended), so the
    items' chunks line up in time (the reference's (B, n) stream of a list); an item that has
    ended gives its samples up to its end. Arguments as :class:`RowWindows`'."""

    def __init__(self, first: int, size: int, lookahead: int, context: int, hop: int) -> None:
        self.row = RowWindows(first, size, lookahead, context, hop)  # the rule and the clock

    def ready(self, state: GenerationState, final: bool) -> Iterator[list[Optional[Window]]]:
        """One list per chunk now ready, with the window of each item (None: nothing left)."""
        r = self.row
        finished = state.finished | final
        avail = torch.where(finished, state.lengths, torch.full_like(state.lengths, state.step))
        while True:
            s = r.start
            e = s + (r.first if s == 0 else r.size)
            if bool(finished.all()):
                longest = int(state.lengths.max())
                if s >= longest:
                    return
                e = min(e, longest)
            elif bool((avail[~finished] < e + r.lookahead).any()):
                return
            windows: list[Optional[Window]] = []
            for i, n in enumerate(avail.tolist()):
                b = min(e + r.lookahead, n)
                cut = max(0, (2 * int(state.lengths[i]) - 1) * r.hop) if finished[i] else None
                windows.append(Window(max(0, s - r.context), b, s, e, cut) if b > s else None)
            yield windows
            r.start = e


def stream_batch(
    audio: AudioDecoder,
    steps: Iterator[GenerationState],
    n_items: int,
    params: InferCodeParams,
    use_decoder: bool,
) -> Iterator[list[np.ndarray]]:
    """Per-item audio chunks (a list of n_items arrays, some possibly empty) of a static batch
    as its steps arrive (:class:`BatchWindows`, decoded by :func:`decode_windows`)."""
    windows = BatchWindows(
        params.stream_first_batch,
        params.stream_batch,
        params.stream_lookahead,
        params.stream_context,
        audio.hop_length,
    )
    state = None
    for state in steps:
        yield from _chunks(audio, windows, state, use_decoder, final=False)
    if state is not None:
        yield from _chunks(audio, windows, state, use_decoder, final=True)


def _chunks(
    audio: AudioDecoder,
    windows: BatchWindows,
    state: GenerationState,
    use_decoder: bool,
    final: bool,
) -> Iterator[list[np.ndarray]]:
    source = state.hiddens if use_decoder else state.tokens
    empty = np.zeros(0, dtype=np.float32)
    for chunk in windows.ready(state, final):
        live = [(i, w) for i, w in enumerate(chunk) if w is not None]
        wavs = decode_windows(audio, [(source[i], w) for i, w in live], use_decoder)
        out = [empty] * len(chunk)
        for (i, _), wav in zip(live, wavs, strict=True):
            out[i] = wav
        yield out
