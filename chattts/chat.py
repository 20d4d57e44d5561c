"""``Chat``: the facade users know from the reference, over the pipeline below it."""

from __future__ import annotations

import copy
import gc
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, Optional, Union

import numpy as np
import torch

from . import assets
from .config import ModelConfig, default_device
from .dia import DiaAPI
from .errors import ChatTTSError, NotLoadedError
from .generation.engine import Interrupt
from .model.loading import release_free_memory
from .models import Models
from .options import LoadOptions
from .params import InferCodeParams, RefineTextParams
from .pipeline import Passes, last
from .speaker import decode_speaker, encode_speaker
from .streaming import stream_batch
from .text import DEFAULT_MAX_SPLIT_CHARS, Normalizer, split_sentences
from .text import split_text as split_long
from .validation import check_code_params, check_refine_params, check_texts

logger = logging.getLogger("chattts")

#: Samples with |x| at or below this are trimmed from both ends of a returned waveform.
TRIM_THRESHOLD = 1e-5


def trim_silence(wav: np.ndarray, threshold: float = TRIM_THRESHOLD) -> np.ndarray:
    """Drop leading and trailing samples with |x| ≤ ``threshold`` (never inner ones)."""
    loud = np.flatnonzero(np.abs(wav) > threshold)
    if loud.size == 0:
        return wav[:0]
    return wav[loud[0] : loud[-1] + 1]


class _Context:
    """Interrupt flags of the generations in flight (the reference's ``Chat.context``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: set[Interrupt] = set()

    def new(self) -> Interrupt:
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


class Chat(DiaAPI):
    """Load a ChatTTS model and synthesise speech, with the reference's API.

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
        self.context = _Context()
        self.models: Optional[Models] = None
        self._passes: Optional[Passes] = None

    # ---- loading ----------------------------------------------------------------------------

    def has_loaded(self, use_decoder: bool = False) -> bool:
        """True when every module needed by ``infer`` is loaded (the Decoder if asked)."""
        if self.models is None:
            return False
        return not use_decoder or self.models.decoder is not None

    def download_models(
        self,
        source: str = "huggingface",
        force_redownload: bool = False,
        custom_path: Optional[str] = None,
        *,
        verify: bool = True,
    ) -> Optional[str]:
        """Fetch and verify the model files; returns the model root, or None after logging why.

        ``source``: ``"huggingface"`` (Hub cache; ``custom_path`` = cache dir), ``"local"``
        (``custom_path`` or the current directory, completed from the Hub) or ``"custom"``.
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
        raise_on_error: bool = False,
    ) -> bool:
        """Load the models; returns False (after logging why) on failure.

        With ``raise_on_error`` the failure is raised instead (a :class:`ChatTTSError`,
        ``ValueError`` or ``OSError``). ``verify=False`` accepts checkpoints other than the
        official one (fine-tuned, random).
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
            )
            models = self._open(options)
        except (ChatTTSError, ValueError, OSError, RuntimeError) as e:
            if raise_on_error:
                raise
            self.logger.error("loading failed: %s", e)
            return False
        self.models = models
        self.config = models.config
        self._passes = Passes(models)
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
        self.logger.info(
            "loaded %s on %s (%s%s)",
            root,
            device,
            engine.dtype,
            ", int8" if engine.quantize else "",
        )
        return models

    def unload(self) -> None:
        """Release the models."""
        had_models = self.models is not None
        self.models = None
        self._passes = None
        if had_models:
            gc.collect()
            release_free_memory()

    def _require(self) -> Passes:
        if self._passes is None:
            raise NotLoadedError("the models are not loaded: call Chat.load() first")
        return self._passes

    # ---- speakers ---------------------------------------------------------------------------

    def sample_random_speaker(self, seed: Optional[int] = None) -> str:
        """A random speaker string; the same ``seed`` gives the same voice on every device."""
        return encode_speaker(self._require().m.speakers.sample(seed))

    def sample_audio_speaker(self, wav: Union[np.ndarray, torch.Tensor, str, bytes]) -> str:
        """A speaker sample string (``spk_smp``) from 24 kHz mono speech (array, or a file)."""
        passes = self._require()
        if isinstance(wav, (str, bytes)) or hasattr(wav, "read"):
            from .audio import load_audio

            wav = load_audio(wav, sample_rate=self.config.sample_rate)
        return passes.sample_audio_speaker(wav)

    def interrupt(self) -> None:
        """Stop every generation in flight within one step."""
        self.context.interrupt()

    # ---- inference --------------------------------------------------------------------------

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
    ) -> Any:
        """Synthesise speech.

        Returns a list of float32 waveforms (N,) at 24 kHz: one per text for a list; for a str,
        a list of one waveform (its sentences, when split, each trimmed and concatenated).
        Empty input gives ``[]``. With ``refine_text_only``, the refined text instead (a str
        for a str, a list for a list). With ``stream``, a generator of float32 chunks (B, n):
        for a list, B = the texts of the current batch (rows of items that have ended are
        zero); for a str, B = 1 and the chunks follow the sentences in order.

        A str with ``split_text`` is split by the reference rule, each sentence normalised,
        then any sentence longer than ``max_split_chars`` (a ``[...]`` tag counting one) is cut
        further at its last sentence or clause boundary, so no piece runs into
        ``max_new_token``.
        """
        passes = self._require()
        if max_split_batch < 1:
            raise ValueError("max_split_batch must be ≥ 1")
        check_texts(text)
        if not skip_refine_text:
            check_refine_params(params_refine_text)
        if not refine_text_only:
            check_code_params(params_infer_code)
        single = isinstance(text, str)
        texts = [text] if single else list(text)
        if not all(isinstance(t, str) for t in texts):
            raise TypeError("text must be a str or a list of str")
        if single and split_text:
            texts = split_sentences(text)
        texts = [
            self.normalizer(t, do_text_normalization, do_homophone_replacement, lang) for t in texts
        ]
        if single and split_text:
            texts = [piece for t in texts for piece in split_long(t, max_split_chars)]
        if not texts or all(not t.strip() for t in texts):
            return _empty_result(single, stream, refine_text_only)
        flag = self.context.new()
        try:
            if not skip_refine_text:
                texts = passes.refine(
                    texts, params_refine_text, flag, self._progress(params_refine_text, "refine")
                )
                if refine_text_only:
                    return "\n".join(texts) if single else texts
            elif refine_text_only:
                return "\n".join(texts) if single else texts
        except BaseException:
            self.context.done(flag)
            raise
        params = copy.copy(params_infer_code)
        if stream:
            return self._stream(
                passes, texts, params, single, split_text, use_decoder, max_split_batch, flag
            )
        try:
            wavs = self._synthesize(
                passes, texts, params, split_text, use_decoder, max_split_batch, flag
            )
        finally:
            self.context.done(flag)
        wavs = [trim_silence(w) for w in wavs]
        return [np.concatenate(wavs)] if single else wavs

    def synthesize(
        self,
        texts: list[str],
        params: Union[InferCodeParams, list[InferCodeParams]],
        *,
        stream: bool = False,
        use_decoder: bool = True,
        refine: Optional[RefineTextParams] = None,
        do_text_normalization: bool = True,
        cancelled: Optional[list[Interrupt]] = None,
        progress: Optional[Callable[[int, int], None]] = None,
    ) -> Iterator[list[np.ndarray]]:
        """Synthesise independent requests as one batch (for servers and batch jobs).

        Unlike ``infer``, each item's ``manual_seed`` seeds only that item, so an item gives
        the same audio whatever it is batched with (and equals ``infer([text])`` with that
        seed). No sentence splitting, no voice carry-over. ``refine``: run the refine pass
        first (one batch, its ``manual_seed`` for all). ``cancelled``: one flag per item; a
        set flag ends that item within one step. ``progress``: called with (step, max_steps)
        after every step of the code pass.

        Yields lists with one float32 array (n,) per item: with ``stream``, the new audio of
        each item (possibly empty) as it is produced; otherwise once, each whole waveform.
        """
        passes = self._require()
        check_texts(texts)
        plist = list(params) if isinstance(params, list) else [params] * len(texts)
        if len(plist) != len(texts):
            raise ValueError("params must be one InferCodeParams or one per text")
        for p in {id(p): p for p in plist}.values():
            check_code_params(p)
        if refine is not None:
            check_refine_params(refine)
        texts = [self.normalizer(t, do_text_normalization) for t in texts]
        if not texts:
            return
        flag = self.context.new()
        try:
            if refine is not None:
                texts = passes.refine(texts, refine, flag)
            steps = passes.code_steps(texts, plist, flag, progress, True, cancelled)
            if stream:
                yield from stream_batch(passes, steps, len(texts), plist[0], use_decoder)
                return
            state = last(steps)
            if state is None:
                yield [np.zeros(0, dtype=np.float32) for _ in texts]
            else:
                yield passes.decode_items(state, use_decoder, padded=False)
        finally:
            self.context.done(flag)

    def _progress(self, params: RefineTextParams, desc: str):
        """A tqdm progress callback over ``max_new_token`` steps when ``show_tqdm``."""
        if not params.show_tqdm:
            return None
        from tqdm.auto import tqdm

        bar = tqdm(total=params.max_new_token, desc=desc, leave=False)

        def update(step: int, total: int) -> None:
            bar.update(step - bar.n)
            if step >= total:
                bar.close()

        return update  # a bar left open by an early EOS closes when the closure is dropped

    def _voice_from_first(self, passes, texts, params, use_decoder, flag) -> InferCodeParams:
        """The reference's voice carry-over: the first text alone becomes ``spk_smp``."""
        state = last(passes.code_steps(texts[:1], params, flag, self._progress(params, "code")))
        if state is None or int(state.lengths[0]) == 0:
            return params
        wav = passes.decode_items(state, use_decoder)[0]
        params = copy.copy(params)
        params.spk_smp = passes.sample_audio_speaker(wav)
        params.txt_smp = texts[0]
        return params

    def _batches(self, passes, texts, params, split_text, use_decoder, max_split_batch, flag):
        if split_text and len(texts) > 1 and params.spk_smp is None:
            params = self._voice_from_first(passes, texts, params, use_decoder, flag)
        for start in range(0, len(texts), max_split_batch):
            yield texts[start : start + max_split_batch], params

    def _synthesize(
        self, passes, texts, params, split_text, use_decoder, max_split_batch, flag
    ) -> list[np.ndarray]:
        wavs: list[np.ndarray] = []
        for batch, p in self._batches(
            passes, texts, params, split_text, use_decoder, max_split_batch, flag
        ):
            state = last(passes.code_steps(batch, p, flag, self._progress(p, "code")))
            if state is None:
                wavs += [np.zeros(0, dtype=np.float32) for _ in batch]
            else:
                wavs += passes.decode_items(state, use_decoder)
        return wavs

    def _stream(
        self, passes, texts, params, single, split_text, use_decoder, max_split_batch, flag
    ) -> Iterator[np.ndarray]:
        try:
            for batch, p in self._batches(
                passes, texts, params, split_text, use_decoder, max_split_batch, flag
            ):
                steps = passes.code_steps(batch, p, flag, self._progress(p, "code"))
                chunks = stream_batch(passes, steps, len(batch), p, use_decoder)
                yield from (_in_order(chunks, len(batch)) if single else _stacked(chunks))
        finally:
            self.context.done(flag)


def _stacked(chunks: Iterator[list[np.ndarray]]) -> Iterator[np.ndarray]:
    """Per-item chunks -> (B, n) arrays, rows of shorter items zero-filled."""
    for parts in chunks:
        width = max(p.size for p in parts)
        if width == 0:
            continue
        out = np.zeros((len(parts), width), dtype=np.float32)
        for i, p in enumerate(parts):
            out[i, : p.size] = p
        yield out


def _in_order(chunks: Iterator[list[np.ndarray]], n: int) -> Iterator[np.ndarray]:
    """Per-item chunks -> (1, n) arrays of item 0 live, then each later item in turn."""
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


def _empty_result(single: bool, stream: bool, refine_text_only: bool) -> Any:
    if refine_text_only:
        return "" if single else []
    if stream:
        return iter(())
    return []


__all__ = ["Chat", "trim_silence", "decode_speaker"]
