"""Finished speech on :class:`chattts.Chat`: ``speak`` returns a typed
:class:`~chattts.audio.speech.Speech` (audio with every segment's time), ``speak_stream`` its
chunks as they are made (docs/captions.md). ``infer`` keeps the reference's return values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Optional, Union

import numpy as np

from ..audio.speech import Speech
from ..errors import InputTypeError
from ..generation.engine import Interrupt
from ..params import InferCodeParams, RefineTextParams
from ..pipeline import Progress, Utterance
from ..pipeline.assembler import SpeechChunk, stream_speech
from ..pipeline.speech import (
    DEFAULT_BATCH,
    PlanItem,
    SpeechRequest,
    plan_speech,
    render_speech,
)
from ..voices import SEED_VOICE, is_voice_reference

if TYPE_CHECKING:
    from ..pipeline import InterruptGroup, Pipeline
    from ..voices import VoiceResolver


class SpeechCalls:
    """``speak`` and ``speak_stream`` over a chat's pipeline (``Chat.speak`` is
    ``chat.speech.speak``).

    Args:
        pipeline: returns the loaded pipeline (raises ``NotLoadedError`` before ``load``).
        resolver: the chat's :class:`~chattts.voices.VoiceResolver` (``Chat.voice_resolver``).
        context: the chat's cancel flags (``chat.interrupt()`` stops these calls too).
    """

    def __init__(
        self,
        pipeline: Callable[[], Pipeline],
        resolver: Callable[[], VoiceResolver],
        context: InterruptGroup,
    ) -> None:
        self._pipeline = pipeline
        self._resolver = resolver
        self.context = context

    @property
    def pipeline(self) -> Pipeline:
        return self._pipeline()

    def voice_fields(self, spec: Optional[str], seed: Optional[int] = None) -> dict[str, object]:
        """The ``InferCodeParams`` fields of a voice spec: a library name or mix, ``seed_N``,
        a speaker string (:meth:`chattts.voices.VoiceResolver.fields`); None: the voice of
        ``seed`` (a random one without)."""
        if spec is None:
            return {"spk_emb": self.pipeline.random_speaker(seed)}
        return {"spk_emb": None, **self._resolver().fields(spec)}

    def voiced(self, params: InferCodeParams) -> InferCodeParams:
        """``params`` with a voice name, mix or ``seed_N`` in ``spk_emb`` replaced by its
        fields (a speaker string, or a recording's ``spk_smp`` / ``txt_smp``); a copy, never
        the caller's object."""
        spec = params.spk_emb if isinstance(params, InferCodeParams) else None
        if not isinstance(spec, str) or not is_voice_reference(spec):
            return params
        return replace(params, **self.voice_fields(spec))  # type: ignore[arg-type]

    def synthesize(
        self,
        texts: Sequence[str],
        params: Union[InferCodeParams, Sequence[InferCodeParams]],
        *,
        stream: bool = False,
        use_decoder: bool = True,
        refine: Optional[RefineTextParams] = None,
        do_text_normalization: bool = True,
        cancelled: Optional[Sequence[Interrupt]] = None,
        progress: Optional[Progress] = None,
    ) -> Iterator[list[np.ndarray]]:
        """Synthesise independent requests as one batch (for servers and batch jobs).

        Unlike ``infer``, each item's ``manual_seed`` seeds only that item, so an item gives
        the same audio whatever it is batched with (and equals ``infer([text])`` with that
        seed). No sentence splitting, no voice carry-over. ``refine``: refine each text alone
        first. ``cancelled``: one flag per item; a set flag ends that item within one step.
        ``progress``: called with (step, max_steps) after every step of the code pass.
        Requests with their own refine parameters: :meth:`chattts.pipeline.Pipeline.synthesize`.

        Yields lists with one float32 array (n,) per item: with ``stream``, the new audio of
        each item (possibly empty) as it is produced; otherwise once, each whole waveform.
        A text with nothing to speak raises :class:`~chattts.errors.EmptyInputError` before
        anything is synthesised.
        """
        pipeline = self.pipeline
        texts = list(texts)
        plist = [params] * len(texts) if isinstance(params, InferCodeParams) else list(params)
        plist = [self.voiced(p) for p in plist]
        flags = [None] * len(texts) if cancelled is None else list(cancelled)
        if len(plist) != len(texts) or len(flags) != len(texts):
            raise ValueError("params and cancelled must be one value or one per text")
        items = [Utterance(t, p, refine, f) for t, p, f in zip(texts, plist, flags, strict=True)]
        flag = self.context.new()
        try:
            yield from pipeline.synthesize(
                items,
                stream=stream,
                use_decoder=use_decoder,
                normalize=do_text_normalization,
                progress=progress,
                cancel=flag,
            )
        finally:
            self.context.done(flag)

    def infer_ssml(
        self,
        docs: Union[str, Sequence[str]],
        stream: bool,
        params_infer_code: InferCodeParams,
        refine: Optional[RefineTextParams],
        **options: object,
    ) -> Union[list[np.ndarray], Iterator[np.ndarray]]:
        """``Chat.infer(..., ssml=True)``: each SSML document spoken through :meth:`speak`
        with ``params_infer_code``'s voice and sampling (its ``manual_seed`` seeds the
        segments), refined with ``refine`` (None: not refined). One waveform per document
        (``infer``'s list), or for one document its stream of (1, n) chunks."""
        p = params_infer_code
        base = {
            "voice": p.spk_emb if isinstance(p.spk_emb, str) else None,
            "seed": p.manual_seed,
            "temperature": p.temperature,
            "top_p": p.top_P,
            "top_k": p.top_K,
            "max_new_token": p.max_new_token,
            "show_tqdm": p.show_tqdm,
            "refine": refine is not None,
            "refine_prompt": refine.prompt if refine is not None and refine.prompt else None,
            "refine_max_new_token": None if refine is None else refine.max_new_token,
            "ssml": True,
            **options,
        }
        if isinstance(docs, str) and stream:
            return (c.audio[None] for c in self.speak_stream(docs, **base) if c.audio.size)
        if stream:
            raise ValueError("infer(ssml=True, stream=True) streams one document, not a list")
        docs = [docs] if isinstance(docs, str) else list(docs)
        return [self.speak(d, **base).audio for d in docs]

    def _plan(
        self, text: Union[str, SpeechRequest], options: dict[str, object]
    ) -> tuple[SpeechRequest, list[PlanItem]]:
        request = text if isinstance(text, SpeechRequest) else SpeechRequest.of(text, **options)
        if isinstance(text, SpeechRequest) and options:
            raise TypeError("give a SpeechRequest or keyword options, not both")
        seed = request.sampling.seed
        items = plan_speech(self.pipeline, request, lambda spec: self.voice_fields(spec, seed))
        return request, items

    def speak(
        self,
        text: Union[str, SpeechRequest],
        *,
        batch: int = DEFAULT_BATCH,
        progress: Optional[Progress] = None,
        cancel: Optional[Interrupt] = None,
        **options: object,
    ) -> Speech:
        """Speak ``text`` (or an SSML document with ``ssml=True``); returns the finished
        :class:`~chattts.audio.speech.Speech`: float32 audio at 24 kHz, its segments (start,
        end, the spoken text, voice) and marks.

        Options (all keyword, see :class:`~chattts.pipeline.speech.SpeechRequest`):
        ``voice`` (a name, a mix, ``seed_N`` or a speaker string), ``ssml``, ``seed``,
        ``temperature``, ``top_p``, ``top_k``, ``max_new_token``, ``speed`` (ChatTTS's
        ``[speed_N]``), ``refine``, ``refine_prompt``, ``refine_max_new_token``, ``lang``,
        ``normalize``, ``tempo``, ``pitch``, ``gain``, ``loudness``, ``true_peak``,
        ``captions`` (cut sentences too long for a caption into clauses), ``gap``.
        ``batch``: segments synthesised together.
        ``progress``: called with (step, max_steps) after every step of the code pass.
        ``cancel``: the caller's own flag (a web page's session): once set, the code pass ends
        within one step and later segments give no audio; the speech made so far is returned
        (``chat.interrupt()`` stops the call too).

        >>> speech = chat.speak("Hello there. How are you?", seed=7, loudness=-16)  # doctest: +SKIP
        >>> speech.save("hello.mp3"); speech.save_captions("hello.srt")             # doctest: +SKIP

        Raises:
            EmptyInputError: nothing to speak; SsmlError: a bad document; ParameterError,
            VoicesError, SpeakerError: a bad option.
        """
        request, items = self._plan(text, options)
        flag = self.context.new()
        try:
            return render_speech(
                self.pipeline,
                items,
                request,
                batch=batch,
                cancel=_either(flag, cancel),
                progress=progress,
            )
        finally:
            self.context.done(flag)

    def speak_stream(
        self,
        text: Union[str, SpeechRequest],
        *,
        batch: int = DEFAULT_BATCH,
        progress: Optional[Progress] = None,
        cancel: Optional[Interrupt] = None,
        **options: object,
    ) -> Iterator[SpeechChunk]:
        """:meth:`speak`, streamed: :class:`~chattts.pipeline.assembler.SpeechChunk` s in
        order, each with its new audio and the segments (and marks) that ended with it. The
        request is checked before the first chunk (errors are raised at the call). ``cancel``
        ends the stream early as it ends :meth:`speak`."""
        request, items = self._plan(text, options)
        flag = self.context.new()
        chunks = stream_speech(
            self.pipeline,
            items,
            request,
            batch=batch,
            cancel=_either(flag, cancel),
            progress=progress,
        )
        return _released(chunks, self.context, flag)


class _AnyOf(Interrupt):
    """A flag that reads as set once it, or any of ``flags``, is set (a call's own flag and the
    caller's)."""

    def __init__(self, *flags: Interrupt) -> None:
        super().__init__()
        self.flags = flags

    def is_set(self) -> bool:
        return super().is_set() or any(f.is_set() for f in self.flags)


def _either(flag: Interrupt, cancel: Optional[Interrupt]) -> Interrupt:
    """``flag``, also set by ``cancel`` when one is given."""
    if cancel is None:
        return flag
    if not hasattr(cancel, "is_set"):
        raise InputTypeError(f"cancel must be an Interrupt, not {type(cancel).__name__}")
    return _AnyOf(flag, cancel)


def _released(
    chunks: Iterator[SpeechChunk], context: InterruptGroup, flag: Interrupt
) -> Iterator[SpeechChunk]:
    """``chunks``, with ``flag`` released from ``context`` once they end."""
    try:
        yield from chunks
    finally:
        context.done(flag)


__all__ = ["SEED_VOICE", "SpeechCalls"]
