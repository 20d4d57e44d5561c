"""What flows through the request path: utterances, cancel flags, progress callbacks, and the
shapes the reference's ``infer`` gives to waveforms and streams."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..generation.engine import Interrupt
from ..params import InferCodeParams, RefineTextParams

#: Samples with |x| at or below this are trimmed from both ends of a returned waveform.
TRIM_THRESHOLD = 1e-5

#: A progress callback: ``(step, max_steps)`` after every generation step.
Progress = Callable[[int, int], None]


def trim_silence(wav: np.ndarray, threshold: float = TRIM_THRESHOLD) -> np.ndarray:
    """Drop leading and trailing samples with |x| ≤ ``threshold`` (never inner ones)."""
    loud = np.flatnonzero(np.abs(wav) > threshold)
    if loud.size == 0:
        return wav[:0]
    return wav[loud[0] : loud[-1] + 1]


class InterruptGroup:
    """The cancel flags of the calls in flight, to stop them all at once (``Chat.context``,
    whose ``interrupt()`` is the reference's ``Chat.interrupt``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: set[Interrupt] = set()

    def new(self) -> Interrupt:
        """A flag for a new call, set by :meth:`interrupt` until :meth:`done`."""
        flag = Interrupt()
        with self._lock:
            self._active.add(flag)
        return flag

    def done(self, flag: Interrupt) -> None:
        with self._lock:
            self._active.discard(flag)

    def interrupt(self) -> None:
        with self._lock:
            for flag in self._active:
                flag.set()


@dataclass
class Utterance:
    """One independent request of :meth:`Pipeline.synthesize`.

    Attributes:
        text: what to say (normalised by ``synthesize`` unless told otherwise).
        params: the code pass's parameters: voice (``spk_emb`` / ``spk_smp`` + ``txt_smp``),
            sampling, and ``manual_seed``, which seeds this item only.
        refine: refine the text first, alone, with these parameters (None: as given).
        cancel: a set flag ends this item (its refine pass, or its code pass within one step).
    """

    text: str
    params: InferCodeParams
    refine: Optional[RefineTextParams] = None
    cancel: Optional[Interrupt] = None


def tqdm_progress(params: RefineTextParams, desc: str) -> Optional[Progress]:
    """A tqdm bar over ``max_new_token`` steps when ``show_tqdm``."""
    if not params.show_tqdm:
        return None
    from tqdm.auto import tqdm

    bar = tqdm(total=params.max_new_token, desc=desc, leave=False)

    def update(step: int, total: int) -> None:
        bar.update(step - bar.n)
        if step >= total:
            bar.close()

    return update  # a bar left open by an early EOS closes when the closure is dropped


#: What a streamed row holds after its item has ended: 2**-24 (−144 dBFS), not exact zeros.
#: Once converted to 16-bit PCM it is digital silence, and a client that scales each row by its
#: peak (the reference's ``float_to_int16``: ``32767 * 32768 // (ceil(peak) * 32768)``) divides
#: by 1 instead of 0 (docs/compat.md, "Streaming a list").
ENDED_ROW = np.float32(2.0**-24)


def stacked(chunks: Iterator[list[np.ndarray]]) -> Iterator[np.ndarray]:
    """Per-item chunks -> (B, n) arrays (the reference's stream of a list of texts); past a
    shorter item's audio its row holds :data:`ENDED_ROW`."""
    for parts in chunks:
        width = max(p.size for p in parts)
        if width == 0:
            continue
        out = np.full((len(parts), width), ENDED_ROW, dtype=np.float32)
        for i, p in enumerate(parts):
            out[i, : p.size] = p
        yield out


def in_order(chunks: Iterator[list[np.ndarray]], n: int) -> Iterator[np.ndarray]:
    """Per-item chunks of a batch of n -> (1, n) arrays: item 0 live, then each later item
    in turn (the stream of a str's sentences)."""
    held: list[list[np.ndarray]] = [[] for _ in range(n)]
    for parts in chunks:
        if parts[0].size:
            yield parts[0][None]
        for i in range(1, n):
            if parts[i].size:
                held[i].append(parts[i])
    for i in range(1, n):
        if held[i]:
            yield np.concatenate(held[i])[None]


__all__ = [
    "ENDED_ROW",
    "TRIM_THRESHOLD",
    "InterruptGroup",
    "Progress",
    "Utterance",
    "in_order",
    "stacked",
    "tqdm_progress",
    "trim_silence",
]
