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
import functools
import logging
from collections.abc import Iterator, Sequence
from typing import Optional, Union

import numpy as np

from ..decode.stream import stream_batch
from ..errors import EmptyInputError
from ..generation.engine import GenerationState, Interrupt
from ..params import InferCodeParams, RefineTextParams
from ..text import DEFAULT_MAX_SPLIT_CHARS, Normalizer, has_speech, split_sentences
from ..text import split_text as split_long
from ..validation import check_code_params, check_refine_params, check_texts
from ..voices.speaker import encode_speaker
from .models import Models
from .passes import Passes, last
from .requests import Progress, Utterance, in_order, stacked, tqdm_progress

logger = logging.getLogger("chattts")


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
        sentence normalised, then any piece longer than ``max_split_chars`` cut further
        (pieces with nothing to speak, such as a lone ``...``, are dropped); a list gives one
        normalised piece per text (an empty list, none).

        Raises:
            EmptyInputError: a str, or a text of the list, with nothing to speak once
                normalised (:func:`chattts.text.has_speech`).
        """
        check_texts(text)
        single = isinstance(text, str)
        norm = functools.partial(
            self.normalizer,
            do_text_normalization=normalize,
            do_homophone_replacement=homophones,
            lang=lang,
        )
        if single and split:
            pieces = [
                p for t in split_sentences(text) for p in split_long(norm(t), max_split_chars)
            ]
            pieces = [p for p in pieces if has_speech(p)]
            if not pieces:
                raise EmptyInputError(text)
            return pieces
        texts = [text] if single else list(text)
        return [speakable(norm(t), t, None if single else i) for i, t in enumerate(texts)]

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
            progress = tqdm_progress(params, "refine")
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
        return self.models.audio.decode_items(state, use_decoder, padded=padded)

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
            chunks = stream_batch(self.models.audio, steps, len(batch), p, use_decoder)
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
            progress = tqdm_progress(params, "code")
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
        steps = self.passes.code_steps(texts[:1], params, cancel, tqdm_progress(params, "code"))
        state = last(steps)
        if state is None or int(state.lengths[0]) == 0:
            return params
        wav = self.models.audio.decode_items(state, use_decoder)[0]
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

        Raises:
            EmptyInputError: an utterance with nothing to speak once normalised (before any
                pass runs; ``index``: its place, when there are several).
        """
        items = list(utterances)
        check_texts([u.text for u in items])
        for u in items:
            check_code_params(u.params)
            if u.refine is not None:
                check_refine_params(u.refine)
        if not items:
            return
        # every text is checked before any refine or code pass runs
        many = len(items) > 1
        texts = [
            speakable(self.normalizer(u.text, normalize), u.text, i if many else None)
            for i, u in enumerate(items)
        ]
        texts = [self._refined(u, t) for u, t in zip(items, texts, strict=True)]
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
            yield from stream_batch(self.models.audio, steps, len(texts), plist[0], use_decoder)
        else:
            yield self._decoded(steps, len(texts), use_decoder, padded=False)

    def _refined(self, u: Utterance, text: str) -> str:
        """The text the code pass reads: ``text`` (normalised) refined alone when asked and
        not cancelled; an empty refinement falls back to ``text``."""
        if u.refine is None or (u.cancel is not None and u.cancel.is_set()):
            return text
        refined = self.passes.refine([text], u.refine, u.cancel, None)[0]
        return refined if refined.strip() else text


def speakable(normalised: str, text: str, index: Optional[int] = None) -> str:
    """``normalised`` (the normalised form of ``text``), checked to hold something to speak.

    Raises:
        EmptyInputError: it does not (``index``: the text's place in a list).
    """
    if not has_speech(normalised):
        raise EmptyInputError(text, index)
    return normalised


__all__ = ["Pipeline", "speakable"]
