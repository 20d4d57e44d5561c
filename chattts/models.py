"""The loaded model stack: every module of a model root, on one device.

The modules below (:mod:`chattts.model`) know nothing of prompts or requests; this module reads
a model root strictly (every dimension from the files) and builds the generation engine with
the speed options of :class:`chattts.options.EngineOptions`.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, replace
from typing import Optional, Union

import numpy as np
import torch

from .config import (
    DECODER_WEIGHTS,
    DVAE_WEIGHTS,
    EMBED_WEIGHTS,
    GPT_WEIGHTS,
    SPK_STAT,
    TOKENIZER_DIR,
    VOCOS_WEIGHTS,
    ModelConfig,
    dvae_config,
)
from .errors import WeightsError
from .generation.build import build_engine
from .generation.engine import Engine
from .generation.ort_decoder import OrtDecoders, converted_decoders
from .model import quant
from .model.dvae import DVAE, Decoder
from .model.embed import Embed
from .model.gpt import GPT
from .model.loading import check_file_layout
from .model.tokenizer import Tokenizer
from .model.vocos import load_vocos
from .options import EngineOptions
from .speaker import SpeakerStats

logger = logging.getLogger("chattts")

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def parse_dtype(dtype: Union[str, torch.dtype]) -> torch.dtype:
    """``"float32" | "bfloat16" | "float16"`` (or a torch dtype) -> torch dtype."""
    if isinstance(dtype, torch.dtype):
        if dtype in _DTYPES.values():
            return dtype
        raise ValueError(f"unsupported dtype {dtype}")
    try:
        return _DTYPES[str(dtype)]
    except KeyError:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, not {dtype!r}") from None


class LazyDVAE:
    """The DVAE, loaded strictly on first use.

    Speech through the Decoder never touches the DVAE (60 MB in float32): only speaker
    samples (``sample_audio_speaker``) and ``use_decoder=False`` do. Its file's tensor names
    and shapes are checked here, from the header, with the errors of a strict load (and with
    ``verify`` the file's SHA256 was checked before); the weights are read on first use.

    Args:
        path: ``DVAE.safetensors``.
        device: where the module goes.
        coef: (1, n_mels, 1) replacement of the checkpoint's ``coef``, or None.
    """

    def __init__(self, path: str, device: torch.device, coef: Optional[torch.Tensor]) -> None:
        self.path = path
        self.device = device
        self.coef = coef
        self._module: Optional[DVAE] = None
        self._lock = threading.Lock()
        with torch.device("meta"):  # names and shapes now, weights on first use
            layout = DVAE(dvae_config(path))
        check_file_layout(layout, path)

    @property
    def loaded(self) -> bool:
        return self._module is not None

    def get(self) -> DVAE:
        """The loaded DVAE (loads it the first time)."""
        if self._module is None:
            with self._lock:
                if self._module is None:
                    dvae = DVAE.from_file(self.path)
                    if self.coef is not None:
                        dvae.coef.data = self.coef.clone()
                    self._module = dvae.to(self.device).eval().requires_grad_(False)
        return self._module


@dataclass
class Models:
    """Every module of a loaded model root, on one device (the DVAE loads on first use)."""

    config: ModelConfig
    tokenizer: Tokenizer
    embed: Embed
    #: the torch GPT; None when the engine runs it on ONNX Runtime (not loaded into torch)
    gpt: Optional[GPT]
    dvae_loader: LazyDVAE
    decoder: Optional[Decoder]
    vocos: Optional[torch.nn.Module]
    speakers: SpeakerStats
    device: torch.device
    engine: Engine
    #: ``asset/gpt`` of the model root (the ONNX Runtime backend converts its weights)
    gpt_dir: str = ""
    #: the Decoder and Vocos on ONNX Runtime (float32 with that backend; ``decoder`` and
    #: ``vocos`` are then None)
    ort_decoders: Optional[OrtDecoders] = None

    @property
    def has_decoder(self) -> bool:
        """Hidden states can be decoded (``use_decoder=True``)."""
        return self.decoder is not None or self.ort_decoders is not None

    @property
    def dvae(self) -> DVAE:
        """The DVAE (loaded on first use)."""
        return self.dvae_loader.get()

    @classmethod
    def load(
        cls,
        root: str,
        device: Union[str, torch.device] = "cpu",
        engine: EngineOptions = EngineOptions(),  # noqa: B008 - frozen
        coef: Optional[str] = None,
        load_decoder: bool = True,
    ) -> Models:
        """Load a model root strictly; every dimension comes from the files.

        ``engine`` is applied as the objects are built: the dtype and int8 weights while the
        modules are read (on the torch backend with ``quantize="int8"`` each GPT layer is
        quantised as it is read, so the float weights of the whole GPT are never in memory
        at once), the other options by :func:`chattts.generation.build.build_engine`. On the
        ONNX Runtime backend the GPT is not read into torch at all: its converted graph comes
        from the conversion cache.

        ``coef`` (a speaker-sample-like base16384 string of the DVAE ``coef``, as the
        reference's ``load(coef=...)``) replaces the checkpoint's value.
        """
        device = torch.device(device)
        compute = parse_dtype(engine.dtype)
        quantize = engine.quantize
        path = lambda rel: os.path.join(root, rel)  # noqa: E731
        config = ModelConfig.from_model_root(root)
        tokenizer = Tokenizer(path(TOKENIZER_DIR))
        if tokenizer.vocab_size != config.gpt.num_text_tokens:
            raise WeightsError(
                f"{path(TOKENIZER_DIR)}: the tokenizer has {tokenizer.vocab_size} tokens, "
                f"{path(EMBED_WEIGHTS)} tensor 'emb_text.weight' has {config.gpt.num_text_tokens}"
            )
        g = config.gpt
        int8 = quantize == "int8"
        if int8:
            quant.check_int8(device, compute)
        on_ort = engine.resolved_backend(device.type) == "onnxruntime"
        coef_tensor = None if coef is None else decode_coef(coef, config.dvae.n_mels)
        dvae = LazyDVAE(path(DVAE_WEIGHTS), device, coef_tensor)
        # with int8 each module is quantised as soon as it is loaded, and the decoders come
        # before the GPT: a module's float weights are transient while the resident set is
        # still small, so the peak stays close to the final size; with ONNX Runtime the code
        # heads stay float32 (less error, little time)
        embed = Embed.from_file(
            path(EMBED_WEIGHTS),
            g.hidden_size,
            g.num_text_tokens,
            g.num_audio_tokens,
            g.num_vq,
            int8_text_head=int8,
            int8_code_heads=int8 and not on_ort,
        )
        decoder, vocos, ort_decoders = _load_decoders(root, int8, on_ort, load_decoder)
        hook = quant.int8_layer_hook if int8 else None
        gpt_dir = os.path.dirname(path(GPT_WEIGHTS))
        gpt = None if on_ort else GPT.from_files(gpt_dir, path(GPT_WEIGHTS), compute, hook, device)
        speakers = SpeakerStats.from_file(path(SPK_STAT), g.hidden_size)
        for module in (embed, decoder, vocos):
            if module is not None:
                module.to(device).eval().requires_grad_(False)
        embed.to(compute)
        if int8:
            where = "onnxruntime" if on_ort else "torch"
            logger.info("int8 weights: the GPT (%s), Decoder and Vocos (torch)", where)
        return cls(
            config,
            tokenizer,
            embed,
            gpt,
            dvae,
            decoder,
            vocos,
            speakers,
            device,
            build_engine(gpt, embed, device, engine, gpt_dir=gpt_dir),
            gpt_dir,
            ort_decoders,
        )

    def with_engine(self, options: EngineOptions) -> Models:
        """The same modules with an engine built for ``options`` (e.g. ``compile=True``).

        On torch, the compute dtype and int8 weights were applied when the modules were
        loaded: they must equal this model's (a different one needs a new :meth:`load`). ONNX
        Runtime needs only the model's files.

        Raises:
            UnsupportedOptionError: ``options`` differ from this model's dtype or quantisation,
                or ask for torch on a model loaded for ONNX Runtime.
        """
        engine = build_engine(self.gpt, self.embed, self.device, options, gpt_dir=self.gpt_dir)
        return replace(self, engine=engine)


def _load_decoders(
    root: str, int8: bool, on_ort: bool, load_decoder: bool
) -> tuple[Optional[Decoder], Optional[torch.nn.Module], Optional[OrtDecoders]]:
    """The Decoder and Vocos, whichever runs them faster (docs/engine.md, "Decoding"): torch
    with int8 pointwise layers for ``int8``; for float32 with the ONNX Runtime backend, their
    exported graphs (the torch modules are then not kept); else torch float32."""
    if on_ort and not int8:  # float32: ONNX Runtime is the faster (int8: torch is)
        entry = converted_decoders(os.path.join(root, os.path.dirname(VOCOS_WEIGHTS)))
        return None, None, OrtDecoders(entry, os.path.join(root, VOCOS_WEIGHTS))
    decoder = Decoder.from_file(os.path.join(root, DECODER_WEIGHTS)) if load_decoder else None
    if int8 and decoder is not None:
        quant.int8_decoder(decoder)
    vocos = load_vocos(os.path.join(root, VOCOS_WEIGHTS))
    if int8:
        quant.int8_vocos(vocos)
    return decoder, vocos, None


def decode_coef(coef: str, n_mels: int) -> torch.Tensor:
    """A ``coef`` string (base16384 of n_mels float32 values) -> (1, n_mels, 1) tensor."""
    import pybase16384 as b14

    try:
        arr = np.frombuffer(b14.decode_from_string(coef), dtype="<f4")
    except Exception as e:
        raise ValueError(f"invalid coef string ({e})") from e
    if arr.size != n_mels:
        raise ValueError(f"coef has {arr.size} values, the model needs {n_mels}")
    return torch.from_numpy(arr.copy()).view(1, n_mels, 1)


def encode_coef(coef: torch.Tensor) -> str:
    """(1, n_mels, 1) tensor -> ``coef`` string."""
    import pybase16384 as b14

    return b14.encode_to_string(coef.detach().float().cpu().numpy().astype("<f4").tobytes())
