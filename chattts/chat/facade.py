"""``Chat``: the facade users know from the reference, over the pipeline below it."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Literal, Optional, TypeVar, Union, overload

import numpy as np

from .. import assets
from ..config import ModelConfig
from ..dia.api import Dia
from ..errors import NotLoadedError
from ..generation.engine import Interrupt
from ..options import LoadOptions
from ..params import InferCodeParams, RefineTextParams
from ..pipeline import InterruptGroup, Pipeline, trim_silence
from ..pipeline.models import Models
from ..text import DEFAULT_MAX_SPLIT_CHARS, Normalizer
from ..validation import MAX_SAMPLE_SECONDS, check_code_params
from ..voices import VoiceLibrary
from .compat import ReferenceAttributes
from .loading import ModelLoading
from .speech import SpeechCalls

if TYPE_CHECKING:
    from ..audio import AudioLike

logger = logging.getLogger("chattts")

T = TypeVar("T")


def _forward(method: Callable[..., T], to: str) -> Callable[..., T]:
    """A ``Chat`` method that forwards to the same method of ``chat.<to>`` (``dia``,
    ``speech``), with its signature and docstring."""

    @functools.wraps(method)
    def call(self: Chat, *args: Any, **kwargs: Any) -> T:
        return method(getattr(self, to), *args, **kwargs)

    return call


class Chat(ModelLoading, ReferenceAttributes):
    """Load a ChatTTS model and synthesise speech, with the reference's API.

    A thin facade: the work is done by :class:`chattts.pipeline.Pipeline` (``chat.pipeline``),
    the Dia-style calls by :class:`chattts.dia.Dia` over the same pipeline. The reference's
    attributes (``coef``, ``device``, ``gpt``, ``tokenizer``, ``speaker``...) are read-only
    views (:mod:`chattts.compat`). ``voices`` is the voice library whose names and mixes
    ``spk_emb`` and the Dia-style ``speakers`` accept (:mod:`chattts.voices.library`).

    >>> chat = Chat()
    >>> chat.load()                       # doctest: +SKIP
    >>> wavs = chat.infer(["Hello!"])     # doctest: +SKIP
    """

    RefineTextParams = RefineTextParams
    InferCodeParams = InferCodeParams

    def __init__(
        self,
        logger: logging.Logger = logger,
        *,
        voices: Union[None, str, os.PathLike, VoiceLibrary] = None,
    ) -> None:
        """``voices``: the voice library (a folder, or a :class:`VoiceLibrary`); default: the
        user's own (``~/.cache/chattts/voices``), which ``chattts serve`` and the web UI read
        too. A throwaway folder (``tempfile.mkdtemp()``) keeps an example's voices out of it."""
        self.logger = logger
        self.config = ModelConfig()
        self.normalizer = Normalizer()
        self.sha256_map: dict[str, str] = dict(assets.SHA256_MAP)
        self.context = InterruptGroup()
        self.models: Optional[Models] = None
        self.options: Optional[LoadOptions] = None
        self._pipeline: Optional[Pipeline] = None
        self._load_failure: Optional[str] = None  # why the last load() failed
        if voices is None or isinstance(voices, (str, os.PathLike)):
            voices = VoiceLibrary() if voices is None else VoiceLibrary(voices)
        self.voices = voices
        self._resolver = None  # compat.voice_resolver's cache
        #: the Dia-style calls over this chat's pipeline (``chat.generate`` etc. are these)
        self.dia = Dia(self._dia_pipeline, self.resolve_voice)
        #: finished speech with segment times: ``chat.speak`` is ``chat.speech.speak``
        self.speech = SpeechCalls(lambda: self.pipeline, self.voice_resolver, self.context)

    @property
    def pipeline(self) -> Pipeline:
        """The request path over the loaded models (raises :class:`NotLoadedError` before
        :meth:`load`)."""
        if self._pipeline is None:
            if self._load_failure is not None:
                raise NotLoadedError(
                    f"the models are not loaded: the last Chat.load() failed: {self._load_failure}"
                )
            raise NotLoadedError("the models are not loaded: call Chat.load() first")
        return self._pipeline

    def _dia_pipeline(self, compiled: bool = False) -> Pipeline:
        """The pipeline for the Dia-style calls; ``compiled``: with the compiled decode step
        (``generate(use_torch_compile=True)``), rebuilt once from the loaded modules."""
        pipeline = self.pipeline
        if compiled and pipeline.models.engine.backend.name != "torch":
            self.logger.warning("use_torch_compile: the GPT runs on ONNX Runtime; not compiled")
            return pipeline
        if compiled and self.options is not None and not self.options.engine.compile:
            self.options = self.options.with_engine(compile=True)
            self.models = pipeline.models.with_engine(self.options.engine)
            self._pipeline = pipeline = Pipeline(self.models, self.normalizer)
        return pipeline

    # ---- speakers ---------------------------------------------------------------------------

    def sample_random_speaker(self, seed: Optional[int] = None) -> str:
        """A random speaker string; the same ``seed`` gives the same voice on every device."""
        return self.pipeline.random_speaker(seed)

    def sample_audio_speaker(self, wav: AudioLike) -> str:
        """A speaker sample string (``spk_smp``) from 24 kHz mono speech (array, or a file)."""
        passes = self.pipeline.passes
        if isinstance(wav, (str, bytes)) or hasattr(wav, "read"):
            from ..audio import load_audio

            wav = load_audio(wav, self.config.sample_rate, max_seconds=MAX_SAMPLE_SECONDS)
        return passes.sample_audio_speaker(wav)

    def interrupt(self) -> None:
        """Stop every generation in flight within one step."""
        self.context.interrupt()

    # ---- inference --------------------------------------------------------------------------

    @overload
    def infer(
        self,
        text: Union[str, list[str]],
        stream: Literal[False] = False,
        lang: Optional[str] = None,
        skip_refine_text: bool = False,
        refine_text_only: Literal[False] = False,
        use_decoder: bool = True,
        do_text_normalization: bool = True,
        do_homophone_replacement: bool = True,
        split_text: bool = True,
        max_split_batch: int = 4,
        params_refine_text: RefineTextParams = ...,
        params_infer_code: InferCodeParams = ...,
        *,
        max_split_chars: int = DEFAULT_MAX_SPLIT_CHARS,
        ssml: bool = False,
    ) -> list[np.ndarray]: ...

    @overload
    def infer(
        self,
        text: Union[str, list[str]],
        stream: Literal[True],
        lang: Optional[str] = None,
        skip_refine_text: bool = False,
        refine_text_only: Literal[False] = False,
        use_decoder: bool = True,
        do_text_normalization: bool = True,
        do_homophone_replacement: bool = True,
        split_text: bool = True,
        max_split_batch: int = 4,
        params_refine_text: RefineTextParams = ...,
        params_infer_code: InferCodeParams = ...,
        *,
        max_split_chars: int = DEFAULT_MAX_SPLIT_CHARS,
        ssml: bool = False,
    ) -> Iterator[np.ndarray]: ...

    @overload
    def infer(
        self,
        text: str,
        stream: bool = False,
        lang: Optional[str] = None,
        skip_refine_text: bool = False,
        *,
        refine_text_only: Literal[True],
        use_decoder: bool = True,
        do_text_normalization: bool = True,
        do_homophone_replacement: bool = True,
        split_text: bool = True,
        max_split_batch: int = 4,
        params_refine_text: RefineTextParams = ...,
        params_infer_code: InferCodeParams = ...,
        max_split_chars: int = DEFAULT_MAX_SPLIT_CHARS,
        ssml: bool = False,
    ) -> str: ...

    @overload
    def infer(
        self,
        text: list[str],
        stream: bool = False,
        lang: Optional[str] = None,
        skip_refine_text: bool = False,
        *,
        refine_text_only: Literal[True],
        use_decoder: bool = True,
        do_text_normalization: bool = True,
        do_homophone_replacement: bool = True,
        split_text: bool = True,
        max_split_batch: int = 4,
        params_refine_text: RefineTextParams = ...,
        params_infer_code: InferCodeParams = ...,
        max_split_chars: int = DEFAULT_MAX_SPLIT_CHARS,
        ssml: bool = False,
    ) -> list[str]: ...

    def infer(
        self,
        text: Union[str, list[str]],
        stream: bool = False,
        lang: Optional[str] = None,
        skip_refine_text: bool = False,
        refine_text_only: bool = False,
        use_decoder: bool = True,
        do_text_normalization: bool = True,
        do_homophone_replacement: bool = True,
        split_text: bool = True,
        max_split_batch: int = 4,
        params_refine_text: RefineTextParams = RefineTextParams(),  # noqa: B008 - never mutated
        params_infer_code: InferCodeParams = InferCodeParams(),  # noqa: B008 - never mutated
        *,
        max_split_chars: int = DEFAULT_MAX_SPLIT_CHARS,
        ssml: bool = False,
    ) -> Union[list[np.ndarray], Iterator[np.ndarray], str, list[str]]:
        """Synthesise speech.

        Returns a list of float32 waveforms (N,) at 24 kHz: one per text for a list; for a str,
        a list of one waveform (its sentences, when split, each trimmed and concatenated).
        An empty list gives ``[]``; a text with nothing to speak raises ``EmptyInputError``.
        With ``refine_text_only``, the refined text instead (a str for a str, a list for a
        list). With ``stream``, a generator of float32 chunks (B, n): for a list, B = the texts
        of the current batch (rows of items that have ended hold 2**-24, silence in 16-bit
        PCM, so clients that scale rows by their peak work); for a str, B = 1 and the chunks
        follow the sentences in order.

        A str with ``split_text`` is split by the reference rule, each sentence normalised,
        then any sentence longer than ``max_split_chars`` (a ``[...]`` tag counting one) is cut
        further at its last sentence or clause boundary, so no piece runs into
        ``max_new_token``. With ``ssml`` each text is an SSML document (docs/ssml.md), spoken
        through :meth:`speak` with the voice and sampling of ``params_infer_code``.
        """
        pipeline = self.pipeline
        if max_split_batch < 1:
            raise ValueError("max_split_batch must be ≥ 1")
        if ssml and not refine_text_only:
            refine = None if skip_refine_text else params_refine_text
            opts = {"lang": lang, "normalize": do_text_normalization}
            return self.speech.infer_ssml(text, stream, params_infer_code, refine, **opts)
        single = isinstance(text, str)
        texts = pipeline.prepare(
            text,
            split=split_text,
            normalize=do_text_normalization,
            homophones=do_homophone_replacement,
            lang=lang,
            max_split_chars=max_split_chars,
        )
        if not refine_text_only:
            params_infer_code = self.speech.voiced(params_infer_code)
            check_code_params(params_infer_code)
        if not texts:  # an empty list: no waveform
            return iter(()) if stream else []
        flag = self.context.new()
        streaming = False  # once the stream owns the flag, it releases it
        try:
            if not skip_refine_text:
                texts = pipeline.refine(texts, params_refine_text, flag)
            if refine_text_only:
                return "\n".join(texts) if single else texts
            run = {
                "carry_voice": single and split_text,
                # the reference batches by max_split_batch only when it splits text: a list
                # without split_text is one batch with one seed
                "batch_size": max_split_batch if split_text else len(texts),
                "use_decoder": use_decoder,
                "cancel": flag,
            }
            if stream:
                chunks = pipeline.stream(texts, params_infer_code, sequential=single, **run)
                streaming = True
                return self._released(chunks, flag)
            wavs = [trim_silence(w) for w in pipeline.speak(texts, params_infer_code, **run)]
        finally:
            if not streaming:
                self.context.done(flag)
        return [np.concatenate(wavs)] if single else wavs

    def _released(self, chunks: Iterator[np.ndarray], flag: Interrupt) -> Iterator[np.ndarray]:
        """``chunks``, with ``flag`` released from the interrupt context once they end."""
        try:
            yield from chunks
        finally:
            self.context.done(flag)

    # ---- the Dia-style API (chattts.dia) ------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        model_id_or_path: str = "2Noise/ChatTTS",
        compute_dtype: str = "float32",
        device: Optional[str] = None,
        *,
        cache_dir: Optional[str] = None,
        revision: Optional[str] = None,
        **kwargs: object,
    ) -> Chat:
        """A loaded ``Chat`` from a local model root or a Hub model repo; see
        :func:`chattts.dia.pretrained_options` for the arguments."""
        from ..dia.api import pretrained_options

        options = pretrained_options(
            model_id_or_path,
            compute_dtype,
            device,
            cache_dir=cache_dir,
            revision=revision,
            **kwargs,
        )
        chat = cls()
        chat.load_options(options)
        return chat

    generate = _forward(Dia.generate, "dia")
    generate_batch = _forward(Dia.generate_batch, "dia")
    save_audio = staticmethod(Dia.save_audio)

    # ---- finished speech (chattts.chat.speech) ------------------------------------------------

    speak = _forward(SpeechCalls.speak, "speech")
    speak_stream = _forward(SpeechCalls.speak_stream, "speech")
    synthesize = _forward(SpeechCalls.synthesize, "speech")


__all__ = ["Chat"]
