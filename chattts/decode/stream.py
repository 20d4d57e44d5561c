"""Streaming: decode only new steps, with left context and lookahead, so chunks are final.

A chunk covers code steps [s, e) and the samples [s · 2·hop, e · 2·hop) of the full decode.
It is decoded from the window of steps [s − context, e + lookahead): the convolutional Decoder
(or DVAE) and Vocos see the neighbours they need, and the chunk's samples are cut out of the
window's output. With context and lookahead covering the decoders' receptive field the chunks
equal the full decode; the defaults trade a little of that for latency (ENGINE_NOTES.md).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from ..generation.engine import GenerationState
from ..params import InferCodeParams
from .decoder import AudioDecoder


class WindowedDecoder:
    """Turns a growing :class:`GenerationState` into per-item audio chunks.

    Args:
        audio: decodes features to audio.
        use_decoder: decode hidden states with the Decoder (else codes with the DVAE).
        first: steps of the first chunk; ``size``: steps of every later chunk.
        lookahead: steps decoded past a chunk's end (≥ 1); ``context``: steps before its start.
    """

    def __init__(
        self,
        audio: AudioDecoder,
        use_decoder: bool,
        first: int,
        size: int,
        lookahead: int,
        context: int,
    ) -> None:
        if first < 1 or size < 1:
            raise ValueError("stream_first_batch and stream_batch must be ≥ 1")
        if lookahead < 1 or context < 0:
            raise ValueError("stream_lookahead must be ≥ 1 and stream_context ≥ 0")
        self.audio = audio
        self.use_decoder = use_decoder
        self.first, self.size = first, size
        self.lookahead, self.context = lookahead, context
        hop = audio.hop_length
        self.hop, self.per_step = hop, 2 * hop
        self.start = 0  # first step not yet emitted

    def ready(self, state: GenerationState, final: bool) -> Iterator[list[np.ndarray]]:
        """Every chunk that can be emitted now; with ``final`` the generation has ended."""
        finished = state.finished | final
        avail = torch.where(finished, state.lengths, torch.full_like(state.lengths, state.step))
        while True:
            s = self.start
            end = s + (self.first if s == 0 else self.size)
            if bool(finished.all()):
                longest = int(state.lengths.max())
                if s >= longest:
                    return
                end = min(end, longest)
            elif bool((avail[~finished] < end + self.lookahead).any()):
                return
            yield self._chunk(state, avail, finished, s, end)
            self.start = end

    @torch.inference_mode()
    def _chunk(
        self, state: GenerationState, avail: torch.Tensor, finished: torch.Tensor, s: int, e: int
    ) -> list[np.ndarray]:
        """Samples of steps [s, e) of every item; each item's window ends at its own data."""
        a = max(0, s - self.context)
        ends = [min(e + self.lookahead, int(n)) for n in avail]
        source = state.hiddens if self.use_decoder else state.tokens
        out: list[np.ndarray] = [np.zeros(0, dtype=np.float32)] * len(ends)
        off = a * self.per_step
        for b in sorted(set(ends)):
            rows = [i for i, end in enumerate(ends) if end == b]
            if b <= s:
                continue
            wav = self.audio.waveform(source[rows, a:b], self.use_decoder).cpu().numpy()
            for j, i in enumerate(rows):
                lo, hi = s * self.per_step, e * self.per_step
                if bool(finished[i]):
                    hi = min(hi, (2 * int(state.lengths[i]) - 1) * self.hop)
                out[i] = wav[j, lo - off : max(hi, lo) - off].copy()
        return out


def stream_batch(
    audio: AudioDecoder,
    steps: Iterator[GenerationState],
    n_items: int,
    params: InferCodeParams,
    use_decoder: bool,
) -> Iterator[list[np.ndarray]]:
    """Per-item audio chunks (a list of n_items arrays, some possibly empty) as steps arrive."""
    decoder = WindowedDecoder(
        audio,
        use_decoder,
        params.stream_first_batch,
        params.stream_batch,
        params.stream_lookahead,
        params.stream_context,
    )
    state = None
    for state in steps:
        yield from decoder.ready(state, final=False)
    if state is not None:
        yield from decoder.ready(state, final=True)
