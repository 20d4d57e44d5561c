"""Opening and releasing the models: the reference's ``load`` API of :class:`chattts.Chat`.

A failed :meth:`ModelLoading.load` returns False, as the reference's does, and also says why
without any logging set up: a :class:`~chattts.errors.LoadFailedWarning`, and the reason
repeated by the next :class:`~chattts.errors.NotLoadedError`.
"""

from __future__ import annotations

import gc
import logging
import warnings
from typing import Optional, Union

import torch

from .. import assets
from ..config import ModelConfig, default_device
from ..errors import ChatTTSError, LoadFailedWarning
from ..model.loading import release_free_memory
from ..options import LoadOptions
from ..pipeline import Pipeline
from ..pipeline.models import Models
from ..text import Normalizer


class ModelLoading:
    """``load``, ``load_options``, ``download_models``, ``has_loaded``, ``unload`` of
    :class:`chattts.Chat`, over the attributes its constructor sets."""

    logger: logging.Logger
    config: ModelConfig
    normalizer: Normalizer
    sha256_map: dict[str, str]
    models: Optional[Models]
    options: Optional[LoadOptions]
    _pipeline: Optional[Pipeline]
    _load_failure: Optional[str]  # why the last load() failed

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
        """Load the models; returns False on failure, as the reference does.

        A failure is logged and also issued as a :class:`~chattts.errors.LoadFailedWarning`
        (seen without any logging set up), and the next call that needs the models raises a
        :class:`NotLoadedError` that repeats the reason. With ``raise_on_error`` the failure
        is raised instead (a :class:`ChatTTSError`, ``ValueError`` or ``OSError``).
        The arguments are those of :class:`chattts.options.LoadOptions` (which
        :meth:`load_options` takes as one value).
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
            return self._failed(e)
        return self._load(options, raise_on_error, stacklevel=4)

    def load_options(self, options: LoadOptions, *, raise_on_error: bool = True) -> bool:
        """Load the models described by ``options`` (see :meth:`load`)."""
        return self._load(options, raise_on_error, stacklevel=4)

    def _load(self, options: LoadOptions, raise_on_error: bool, stacklevel: int) -> bool:
        """:meth:`load_options`; ``stacklevel``: where a failure's warning points (the
        user's call, counted from :meth:`_failed`)."""
        try:
            models = self._open(options)
        except (ChatTTSError, ValueError, OSError, RuntimeError) as e:
            if raise_on_error:
                raise
            return self._failed(e, stacklevel)
        self._load_failure = None
        self.models, self.options = models, options
        self.config = models.config
        self._pipeline = Pipeline(models, self.normalizer)
        self.normalizer.renew()  # as the reference's load: normalisers may be registered again
        release_free_memory()
        return True

    def _failed(self, e: BaseException, stacklevel: int = 3) -> bool:
        """Record, log and warn about a failed load (``stacklevel``: the user's call)."""
        reason = str(e).strip() or type(e).__name__
        self._load_failure = reason
        self.logger.error("loading failed: %s", reason)
        warnings.warn(
            f"Chat.load() failed and returned False: {reason}",
            LoadFailedWarning,
            stacklevel=stacklevel,
        )
        return False

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
        self._load_failure = None
        had_models = self.models is not None
        self.models = None
        self._pipeline = None
        if had_models:
            gc.collect()
            release_free_memory()


__all__ = ["ModelLoading"]
