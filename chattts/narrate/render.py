"""Rendering segments: batches, derived seeds, redraws, progress (docs/narrate.md, "How a book
is read").

The renderer draws audio through a :class:`Synthesize` callable: :func:`chat_synthesize` (a
loaded ``Chat``'s ``synthesize``, what ``chattts narrate`` uses), or the server's, which submits
background tickets to its continuous-batching scheduler so that live requests keep priority
(:mod:`chattts.server.jobs`).

Segments are rendered in batches of ``batch`` independent items (each with its own
``manual_seed``, so each sounds the same whatever it is batched with). The batches are cut from
fixed windows of the book (``batch * WINDOW_BATCHES`` segments in reading order), the
segments of a window sorted by length so that a batch's items end at similar steps; a batch is
committed whole, so a resumed run cuts exactly the batches an uninterrupted run would.

A segment that gives no audio (the model drew its end at the first step) is drawn again with
a seed derived from its id and the redraw number, at most ``max_redraws`` times; each redraw is
logged, and the manifest lists them.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Optional, Protocol

import numpy as np

from ..errors import NarrationCancelled, NotLoadedError
from ..generation.engine import Interrupt
from ..params import InferCodeParams, RefineTextParams
from .segments import TRIM_THRESHOLD, NarrationSettings, Segment, derived_seed, segment_params
from .store import Rendered

if TYPE_CHECKING:
    from ..chat import Chat

logger = logging.getLogger("chattts")

#: Batches per window: the segments of a window are sorted by length before being batched.
WINDOW_BATCHES = 4
#: Weight files of a model root (with ``asset/tokenizer``), hashed for a model's identity.
_WEIGHTS = ("gpt", "tokenizer", "Embed", "DVAE", "Decoder", "Vocos", "spk_stat")


@dataclass(frozen=True)
class NarrationProgress:
    """Where a narration stands (given to the progress callback after every batch).

    Attributes:
        chapters_done, chapters: chapters with every segment finished, and all of them.
        segments_done, segments: distinct segments finished, and all of them.
        audio_seconds: seconds of speech finished (all runs).
        rendered_seconds: seconds of speech rendered by this run.
        rendered_segments: segments rendered by this run.
        elapsed: seconds this run has spent rendering.
        redraws: segments drawn again by this run.
    """

    chapters_done: int
    chapters: int
    segments_done: int
    segments: int
    audio_seconds: float
    rendered_seconds: float = 0.0
    rendered_segments: int = 0
    elapsed: float = 0.0
    redraws: int = 0

    @property
    def real_time_factor(self) -> Optional[float]:
        """Seconds of work per second of speech in this run (None before any speech)."""
        return self.elapsed / self.rendered_seconds if self.rendered_seconds > 0 else None

    @property
    def eta(self) -> Optional[float]:
        """Seconds left, at this run's pace per segment (None before any segment)."""
        if self.rendered_segments <= 0:
            return None
        return self.elapsed / self.rendered_segments * (self.segments - self.segments_done)


Progress = Callable[[NarrationProgress], None]


class Synthesize(Protocol):
    """Draws one batch of independent segments: one float32 waveform (n,) per text, at the
    model's rate (n may be 0: the model drew its end at once).

    Args:
        texts: what each segment reads (not normalised yet).
        params: each segment's code pass parameters (its voice and ``manual_seed`` set).
        refine: refine each text alone first with these parameters (None: no refine pass).
        normalize: normalise the texts (numbers, symbols) first.
        cancel: once set, the batch ends within one generation step (what it returns then
            is not whole: the renderer drops it).

    Raises:
        EmptyInputError: a text with nothing to speak once normalised (before any pass runs).
    """

    def __call__(
        self,
        texts: Sequence[str],
        params: Sequence[InferCodeParams],
        refine: Optional[RefineTextParams],
        normalize: bool,
        cancel: Interrupt,
    ) -> list[np.ndarray]: ...


def chat_synthesize(chat: Chat) -> Synthesize:
    """A :class:`Synthesize` over ``chat.synthesize`` (one batch of the engine, in the calling
    thread)."""

    def synthesize(
        texts: Sequence[str],
        params: Sequence[InferCodeParams],
        refine: Optional[RefineTextParams],
        normalize: bool,
        cancel: Interrupt,
    ) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        for wavs in chat.synthesize(
            list(texts),
            list(params),
            refine=refine,
            do_text_normalization=normalize,
            cancelled=[cancel] * len(texts),
        ):
            out = list(wavs)
        return out

    return synthesize


def model_identity(chat: Chat) -> str:
    """What in a loaded ``chat`` changes the audio, as a short hex digest: the weights (the
    official SHA-256s when they were verified, else the files' contents), the device type,
    the compute dtype, the int8 weights, the GPT backend and the DVAE ``coef``."""
    options, models = chat.options, chat.models
    if options is None or models is None:
        raise NotLoadedError("narration needs a loaded model: call chat.load() first")
    root = os.path.dirname(os.path.dirname(models.gpt_dir))
    h = hashlib.sha256()
    if options.verify:
        for name, digest in sorted(chat.sha256_map.items()):
            h.update(f"{name}={digest};".encode())
    else:
        for path in _weight_files(root):
            h.update(os.path.relpath(path, root).encode() + b"\0")
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
    engine = options.engine
    device = models.device.type
    for part in (device, engine.dtype, engine.quantize, engine.resolved_backend(device)):
        h.update(f"|{part}".encode())
    h.update(f"|coef={options.coef}".encode())
    return h.hexdigest()[:32]


def _weight_files(root: str) -> list[str]:
    out = []
    for folder, dirs, files in os.walk(os.path.join(root, "asset")):
        dirs.sort()
        for name in sorted(files):
            if name.startswith(_WEIGHTS) or os.path.basename(folder) in ("gpt", "tokenizer"):
                out.append(os.path.join(folder, name))
    return out


def batches(segments: Sequence[Segment], pending: set[str], batch: int) -> list[list[Segment]]:
    """The batches that render the ``pending`` ids among ``segments`` (reading order, one per
    id): windows of ``batch * WINDOW_BATCHES`` segments, each sorted longest first and cut
    into batches of ``batch``."""
    unique: list[Segment] = []
    seen: set[str] = set()
    for s in segments:
        if s.id not in seen:
            seen.add(s.id)
            unique.append(s)
    window = batch * WINDOW_BATCHES
    out: list[list[Segment]] = []
    for start in range(0, len(unique), window):
        todo = [s for s in unique[start : start + window] if s.id in pending]
        todo.sort(key=lambda s: -len(s.text))  # stable: reading order among equal lengths
        out += [todo[i : i + batch] for i in range(0, len(todo), batch)]
    return out


def trim(wav: np.ndarray) -> np.ndarray:
    """``wav`` without the samples of |x| ≤ :data:`TRIM_THRESHOLD` at its two ends."""
    loud = np.flatnonzero(np.abs(wav) > TRIM_THRESHOLD)
    return wav[loud[0] : loud[-1] + 1] if loud.size else wav[:0]


class Renderer:
    """Renders batches of segments through one ``synthesize`` with one ``settings``.

    Args:
        synthesize: what draws the audio (:func:`chat_synthesize`, or the server's).
        settings: how the document is read.
        interrupt: a flag that, once set, ends the batch in flight within one step.
    """

    def __init__(
        self,
        synthesize: Synthesize,
        settings: NarrationSettings,
        interrupt: Optional[Interrupt] = None,
    ) -> None:
        self.synthesize = synthesize
        self.settings = settings
        self.interrupt = interrupt or Interrupt()
        refine = settings.refine
        # one refine seed for every item: each item is refined alone, so its text depends on
        # its own text and this seed only
        self._refine = (
            None
            if refine is None
            else replace(refine, manual_seed=derived_seed(settings.seed, "refine"), show_tqdm=False)
        )

    def render(self, batch: Sequence[Segment]) -> tuple[list[Rendered], list[Segment]]:
        """Render ``batch`` (drawing again, with derived seeds, what gives no audio): the
        segments rendered, and those that gave no audio after every redraw."""
        done: list[Rendered] = []
        todo = list(batch)
        attempt = 0
        while todo:
            wavs = self._synthesize(todo, attempt)
            empty = []
            for seg, wav in zip(todo, wavs, strict=True):
                audio = trim(np.asarray(wav, dtype=np.float32))
                seed = derived_seed(self.settings.seed, seg.id, attempt)
                if audio.size:
                    done.append(Rendered(seg.id, audio, attempt, seed, seg.text))
                else:
                    empty.append(seg)
            for seg in empty:
                logger.warning(
                    "chapter %d, segment %d gave no audio (draw %d of %d): %r",
                    seg.chapter + 1,
                    seg.index + 1,
                    attempt + 1,
                    self.settings.max_redraws + 1,
                    _short(seg.text),
                )
            if attempt >= self.settings.max_redraws:
                return done, empty
            todo, attempt = empty, attempt + 1
        return done, []

    def _synthesize(self, segments: Sequence[Segment], attempt: int) -> list[np.ndarray]:
        if self.interrupt.is_set():
            raise NarrationCancelled("the narration was cancelled")
        params = [segment_params(self.settings, s, attempt) for s in segments]
        texts = [s.text for s in segments]
        out = self.synthesize(texts, params, self._refine, self.settings.normalize, self.interrupt)
        if self.interrupt.is_set():  # items cut short: their audio is not whole
            raise NarrationCancelled("the narration was cancelled")
        return out


def _short(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


__all__ = [
    "WINDOW_BATCHES",
    "NarrationProgress",
    "Progress",
    "Renderer",
    "Synthesize",
    "batches",
    "chat_synthesize",
    "model_identity",
    "trim",
]
