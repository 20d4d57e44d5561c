"""``Chat``: the facade users know from the reference, over the pipeline below it."""

from __future__ import annotations

import functools
import gc
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Literal, Optional, TypeVar, Union, overload

import numpy as np
import torch

from .. import assets
from ..config import ModelConfig, default_device
from ..dia.api import Dia
from ..errors import ChatTTSError, NotLoadedError
from ..generation.engine import Interrupt
from ..model.loading import release_free_memory
from ..options import LoadOptions
from ..params import InferCodeParams, RefineTextParams
from ..pipeline import InterruptGroup, Pipeline, trim_silence
from ..pipeline.models import Models
from ..text import DEFAULT_MAX_SPLIT_CHARS, Normalizer
from ..validation import MAX_SAMPLE_SECONDS, check_code_params
from ..voices import VoiceLibrary
from .compat import ReferenceAttributes
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


class Chat(ReferenceAttributes):
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

    def __init__(self, logger: logging.Logger = logger) -> None:
        self.logger = logger
        self.config = ModelConfig()
        self.normalizer = Normalizer()
        self.sha256_map: dict[str, str] = dict(assets.SHA256_MAP)
        self.context = InterruptGroup()
        self.models: Optional[Models] = None
        self.options: Optional[LoadOptions] = None
        self._pipeline: Optional[Pipeline] = None
        self.voices = VoiceLibrary()
        self._resolver = None  # compat.voice_resolver's cache
        #: the Dia-style calls over this chat's pipeline (``chat.generate`` etc. are these)
        self.dia = Dia(self._dia_pipeline, self.resolve_voice)
        #: finished speech with segment times: ``chat.speak`` is ``chat.speech.speak``
        self.speech = SpeechCalls(lambda: self.pipeline, self.voice_resolver, self.context)

    # ---- loading ----------------------------------------------------------------------------

    def has_loaded(self, use_decoder: bool = False) -> bool:
        """True when every module needed by ``infer`` is loaded (the Decoder if asked)."""
        if self.models is None:
            return False
        return not use_decoder or self.models.has_decoder

    def download_models(
        self,
        source: str = "local",
        force_redownload: bool = False,
        custom_path: Optional[str] = None,
        *,
        verify: bool = True,
    ) -> Optional[str]:
        """Fetch and verify the model files; returns the model root, or None after logging why.

        ``source``: ``"local"`` (the default, as the reference: ``custom_path`` or the current
        directory, completed from the Hub), ``"huggingface"`` (Hub cache; ``custom_path`` =
        cache dir) or ``"custom"``.
        """
        try:
            return assets.resolve_model_root(
                source, custom_path, force_redownload, verify, sha256_map=self.sha256_map
            )
        except (ChatTTSError, ValueError, OSError) as e:
            self.logger.error("%s", e)
            return None

    def load(
        self,
        source: str = "local",
        force_redownload: bool = False,
        compile: bool = False,
        custom_path: Optional[str] = None,
        device: Optional[Union[str, torch.device]] = None,
        coef: Optional[str] = None,
        use_flash_attn: bool = False,
        use_vllm: bool = False,
        experimental: bool = False,
        *,
        verify: bool = True,
        dtype: str = "float32",
        quantize: Optional[str] = None,
        backend: str = "auto",
        ort_spinning: bool = False,
        raise_on_error: bool = False,
    ) -> bool:
        """Load the models; returns False (after logging why) on failure.

        The arguments are those of :class:`chattts.options.LoadOptions` (which
        :meth:`load_options` takes as one value). With ``raise_on_error`` the failure is
        raised instead (a :class:`ChatTTSError`, ``ValueError`` or ``OSError``).
        ``verify=False`` accepts checkpoints other than the official one (fine-tuned, random).
        """
        if use_vllm:
            self.logger.warning("use_vllm: vLLM is not wired in; the built-in engine is used")
        try:
            options = LoadOptions.from_kwargs(
                source=source,
                custom_path=custom_path,
                force_redownload=force_redownload,
                verify=verify,
                device=device,
                experimental=experimental,
                coef=coef,
                dtype=dtype,
                quantize=quantize,
                compile=compile,
                use_flash_attn=use_flash_attn,
                backend=backend,
                ort_spinning=ort_spinning,
            )
        except ValueError as e:
            if raise_on_error:
                raise
            self.logger.error("loading failed: %s", e)
            return False
        return self.load_options(options, raise_on_error=raise_on_error)

    def load_options(self, options: LoadOptions, *, raise_on_error: bool = True) -> bool:
        """Load the models described by ``options`` (see :meth:`load`)."""
        try:
            models = self._open(options)
        except (ChatTTSError, ValueError, OSError, RuntimeError) as e:
            if raise_on_error:
                raise
            self.logger.error("loading failed: %s", e)
            return False
        self.models, self.options = models, options
        self.config = models.config
        self._pipeline = Pipeline(models, self.normalizer)
        self.normalizer.renew()  # as the reference's load: normalisers may be registered again
        release_free_memory()
        return True

    def _open(self, options: LoadOptions) -> Models:
        """Resolve, verify and load the model root of ``options`` (raises on failure)."""
        root = assets.resolve_model_root(
            options.source,
            options.custom_path,
            options.force_redownload,
            options.verify,
            sha256_map=self.sha256_map,
        )
        device = torch.device(options.device or default_device(options.experimental))
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' asked for, but CUDA is not available")
        self.unload()
        models = Models.load(root, device, options.engine, options.coef)
        engine = options.engine
        int8 = ", int8" if engine.quantize else ""
        self.logger.info("loaded %s on %s (%s%s)", root, device, engine.dtype, int8)
        return models

    def unload(self) -> None:
        """Release the models."""
        had_models = self.models is not None
        self.models = None
        self._pipeline = None
        if had_models:
            gc.collect()
            release_free_memory()

    @property
    def pipeline(self) -> Pipeline:
        """The request path over the loaded models (raises :class:`NotLoadedError` before
        :meth:`load`)."""
        if self._pipeline is None:
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
        Empty input gives ``[]``. With ``refine_text_only``, the refined text instead (a str
        for a str, a list for a list). With ``stream``, a generator of float32 chunks (B, n):
        for a list, B = the texts of the current batch (rows of items that have ended hold
        2**-24, silence in 16-bit PCM, so clients that scale rows by their peak work); for a str,
        B = 1 and the chunks follow the sentences in order.

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
        if not texts or all(not t.strip() for t in texts):
            return _empty_result(single, stream, refine_text_only)
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


def _empty_result(
    single: bool, stream: bool, refine_text_only: bool
) -> Union[list[np.ndarray], Iterator[np.ndarray], str, list[str]]:
    if refine_text_only:
        return "" if single else []
    if stream:
        return iter(())
    return []


__all__ = ["Chat"]
