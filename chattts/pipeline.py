"""The request path: every front end reaches the models through :class:`Pipeline`.

``Chat.infer``, ``Chat.synthesize``, the Dia-style calls, the server's batcher and the web UI
are adapters over these calls (docs/architecture.md, "One request"):

* :meth:`Pipeline.prepare`: text -> the pieces to speak (sentence splitting, normalisation,
  length limit);
* :meth:`Pipeline.refine`: the refine pass over pieces;
* :meth:`Pipeline.speak`: the reference's ``infer`` semantics over pieces — one params object
  for all, its seed for each batch, the first piece's voice carried over to the others,
  batches of ``batch_size``, waveforms or a stream in the reference's order;
* :meth:`Pipeline.synthesize`: independent :class:`Utterance` objects as one batch, each with
  its own seed, voice, refine and cancel flag, so that an item sounds as it would alone.

Each call takes its own cancel flag (:class:`Interrupt`): stopping one request never touches
another.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

from .generation.engine import GenerationState, Interrupt
from .models import Models
from .params import InferCodeParams, RefineTextParams
from .passes import Passes, last
from .speaker import encode_speaker
from .streaming import stream_batch
from .text import DEFAULT_MAX_SPLIT_CHARS, Normalizer, split_sentences
from .text import split_text as split_long
from .validation import check_code_params, check_refine_params, check_texts

logger = logging.getLogger("chattts")

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


def _tqdm_progress(params: RefineTextParams, desc: str) -> Optional[Progress]:
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


class Pipeline:
    """The request path over loaded :class:`Models` (see the module docstring).

    Args:
        models: the loaded model stack.
        normalizer: the text normaliser (shared with ``Chat.normalizer``).
    """

    def __init__(self, models: Models, normalizer: Normalizer) -> None:
        self.models = models
        self.passes = Passes(models)
        self.normalizer = normalizer

    @property
    def sample_rate(self) -> int:
        return int(self.models.config.sample_rate)

    def random_speaker(self, seed: Optional[int] = None) -> str:
        """A random speaker string (the same ``seed`` gives the same voice on every device)."""
        return encode_speaker(self.models.speakers.sample(seed))

    # ---- text -------------------------------------------------------------------------------

    def prepare(
        self,
        text: Union[str, Sequence[str]],
        *,
        split: bool = True,
        normalize: bool = True,
        homophones: bool = True,
        lang: Optional[str] = None,
        max_split_chars: int = DEFAULT_MAX_SPLIT_CHARS,
    ) -> list[str]:
        """The pieces to speak: a str with ``split`` is split by the reference rule, each
        sentence normalised, then any piece longer than ``max_split_chars`` cut further; a
        list gives one normalised piece per text."""
        check_texts(text)
        single = isinstance(text, str)
        texts = split_sentences(text) if single and split else ([text] if single else list(text))
        texts = [self.normalizer(t, normalize, homophones, lang) for t in texts]
        if single and split:
            texts = [piece for t in texts for piece in split_long(t, max_split_chars)]
        return texts

    def refine(
        self,
        texts: list[str],
        params: RefineTextParams,
        cancel: Optional[Interrupt] = None,
        progress: Optional[Progress] = None,
    ) -> list[str]:
        """The refine pass over ``texts`` as one batch (``params.manual_seed`` seeds it)."""
        check_refine_params(params)
        if progress is None:
            progress = _tqdm_progress(params, "refine")
        return self.passes.refine(texts, params, cancel, progress)

    # ---- the reference's infer --------------------------------------------------------------

    def speak(
        self,
        texts: list[str],
        params: InferCodeParams,
        *,
        carry_voice: bool = False,
        batch_size: int = 4,
        use_decoder: bool = True,
        cancel: Optional[Interrupt] = None,
    ) -> list[np.ndarray]:
        """The code pass and decoding of ``texts`` with the reference's semantics: one float32
        waveform (n,) per text, untrimmed.

        ``params`` serve every text and its ``manual_seed`` seeds each batch of
        ``batch_size``; with ``carry_voice`` (and no ``spk_smp``) the first text is
        synthesised alone and becomes the speaker sample of all. ``params`` is never changed.
        """
        wavs: list[np.ndarray] = []
        for batch, steps, _ in self._batches(
            texts, params, carry_voice, batch_size, use_decoder, cancel
        ):
            wavs += self._decoded(steps, len(batch), use_decoder, padded=True)
        return wavs

    def _decoded(
        self, steps: Iterator[GenerationState], n: int, use_decoder: bool, padded: bool
    ) -> list[np.ndarray]:
        """Run a generation to its end and decode its n items (empty when it ran no step)."""
        state = last(steps)
        if state is None:
            return [np.zeros(0, dtype=np.float32) for _ in range(n)]
        return self.passes.decode_items(state, use_decoder, padded=padded)

    def stream(
        self,
        texts: list[str],
        params: InferCodeParams,
        *,
        sequential: bool = False,
        carry_voice: bool = False,
        batch_size: int = 4,
        use_decoder: bool = True,
        cancel: Optional[Interrupt] = None,
    ) -> Iterator[np.ndarray]:
        """:meth:`speak`, streamed: float32 chunks (B, n) as the audio is decoded.

        Without ``sequential``, B = the texts of the current batch (rows of texts that have
        ended are zero); with it, B = 1 and the chunks follow the texts in order (the first
        text of each batch live, the others once it is done).
        """
        for batch, steps, p in self._batches(
            texts, params, carry_voice, batch_size, use_decoder, cancel
        ):
            chunks = stream_batch(self.passes, steps, len(batch), p, use_decoder)
            yield from (in_order(chunks, len(batch)) if sequential else stacked(chunks))

    def _batches(
        self,
        texts: list[str],
        params: InferCodeParams,
        carry_voice: bool,
        batch_size: int,
        use_decoder: bool,
        cancel: Optional[Interrupt],
    ) -> Iterator[tuple[list[str], Iterator[GenerationState], InferCodeParams]]:
        """(texts, code-pass steps, params) of each batch of :meth:`speak`, lazily."""
        check_code_params(params)
        if batch_size < 1:
            raise ValueError("max_split_batch must be ≥ 1")
        if carry_voice and len(texts) > 1 and params.spk_smp is None:
            params = self.voice_from_first(texts, params, use_decoder, cancel)
        for start in range(0, len(texts), batch_size):
            batch = texts[start : start + batch_size]
            progress = _tqdm_progress(params, "code")
            yield batch, self.passes.code_steps(batch, params, cancel, progress), params

    def voice_from_first(
        self,
        texts: list[str],
        params: InferCodeParams,
        use_decoder: bool = True,
        cancel: Optional[Interrupt] = None,
    ) -> InferCodeParams:
        """The reference's voice carry-over: the first text alone becomes ``spk_smp`` (with
        ``txt_smp`` = that text) in a copy of ``params``. When its audio is too short to be
        a speaker sample, ``params`` is returned as it is (with a warning)."""
        steps = self.passes.code_steps(texts[:1], params, cancel, _tqdm_progress(params, "code"))
        state = last(steps)
        if state is None or int(state.lengths[0]) == 0:
            return params
        wav = self.passes.decode_items(state, use_decoder)[0]
        if wav.size < self.passes.min_sample_length():
            logger.warning(
                "the first sentence's audio (%d samples) is too short to carry its voice "
                "over: the other sentences are synthesised without a speaker sample",
                wav.size,
            )
            return params
        params = copy.copy(params)
        params.spk_smp = self.passes.sample_audio_speaker(wav)
        params.txt_smp = texts[0]
        return params

    # ---- independent requests ---------------------------------------------------------------

    def synthesize(
        self,
        utterances: Sequence[Utterance],
        *,
        stream: bool = False,
        use_decoder: bool = True,
        normalize: bool = True,
        progress: Optional[Progress] = None,
        cancel: Optional[Interrupt] = None,
    ) -> Iterator[list[np.ndarray]]:
        """Synthesise independent utterances as one batch (``cancel`` stops all of them).

        Each utterance's ``manual_seed`` seeds only that item, so it gives the same audio
        whatever it is batched with (and equals ``speak([text], params)`` with that seed).
        An utterance with ``refine`` is refined alone first (its refine seed seeds only it);
        texts are normalised unless ``normalize=False`` or they were refined. ``progress``:
        called with (step, max_steps) after every step of the code pass.

        Yields lists with one float32 array (n,) per utterance: with ``stream``, the new audio
        of each item (possibly empty) as it is produced; otherwise once, each whole waveform.
        """
        items = list(utterances)
        check_texts([u.text for u in items])
        for u in items:
            check_code_params(u.params)
            if u.refine is not None:
                check_refine_params(u.refine)
        if not items:
            return
        texts = [self._text_of(u, normalize) for u in items]
        # items cancelled before the code pass (while refining, say) get no audio and no rows
        live = [i for i, u in enumerate(items) if u.cancel is None or not u.cancel.is_set()]
        for parts in self._code_pass(
            [texts[i] for i in live],
            [items[i] for i in live],
            stream,
            use_decoder,
            progress,
            cancel,
        ):
            out = [np.zeros(0, dtype=np.float32) for _ in items]
            for i, part in zip(live, parts, strict=True):
                out[i] = part
            yield out

    def _code_pass(
        self,
        texts: list[str],
        items: list[Utterance],
        stream: bool,
        use_decoder: bool,
        progress: Optional[Progress],
        cancel: Optional[Interrupt],
    ) -> Iterator[list[np.ndarray]]:
        """The code pass and decoding of :meth:`synthesize` (items seeded one by one)."""
        if not items:
            yield []
            return
        plist = [u.params for u in items]
        flags = [u.cancel or Interrupt() for u in items]
        steps = self.passes.code_steps(texts, plist, cancel, progress, True, flags)
        if stream:
            yield from stream_batch(self.passes, steps, len(texts), plist[0], use_decoder)
        else:
            yield self._decoded(steps, len(texts), use_decoder, padded=False)

    def _text_of(self, u: Utterance, normalize: bool) -> str:
        """The text the code pass reads: refined alone (when asked, and not cancelled), else
        normalised; an empty refinement falls back to the normalised text."""
        text = self.normalizer(u.text, normalize)
        if u.refine is None or (u.cancel is not None and u.cancel.is_set()):
            return text
        refined = self.passes.refine([text], u.refine, u.cancel, None)[0]
        return refined if refined.strip() else text


def stacked(chunks: Iterator[list[np.ndarray]]) -> Iterator[np.ndarray]:
    """Per-item chunks -> (B, n) arrays, rows of shorter items zero-filled (the reference's
    stream of a list of texts)."""
    for parts in chunks:
        width = max(p.size for p in parts)
        if width == 0:
            continue
        out = np.zeros((len(parts), width), dtype=np.float32)
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
    "TRIM_THRESHOLD",
    "InterruptGroup",
    "Pipeline",
    "Progress",
    "Utterance",
    "in_order",
    "stacked",
    "trim_silence",
]
