"""The loaded model stack: every module of a model root, on one device.

The modules below (:mod:`chattts.model`) know nothing of prompts or requests; this module reads
a model root strictly (every dimension from the files) and builds the generation engine with
the speed options of :class:`chattts.options.EngineOptions`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from typing import Optional, Union

import numpy as np
import torch

from ..config import (
    DVAE_WEIGHTS,
    EMBED_WEIGHTS,
    GPT_WEIGHTS,
    SPK_STAT,
    TOKENIZER_DIR,
    ModelConfig,
)
from ..decode.decoder import AudioDecoder, LazyDVAE, load_decoders
from ..errors import WeightsError
from ..generation.build import build_engine
from ..generation.engine import Engine
from ..model import quant
from ..model.dvae import DVAE, Decoder
from ..model.embed import Embed
from ..model.gpt import GPT
from ..model.tokenizer import Tokenizer
from ..options import EngineOptions
from ..voices.speaker import SpeakerStats

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


@dataclass
class Models:
    """Every module of a loaded model root, on one device (the DVAE loads on first use)."""

    config: ModelConfig
    tokenizer: Tokenizer
    embed: Embed
    #: the torch GPT; None when the engine runs it on ONNX Runtime (not loaded into torch)
    gpt: Optional[GPT]
    #: the Decoder, DVAE and Vocos (or their ONNX Runtime graphs): GPT outputs -> audio
    audio: AudioDecoder
    speakers: SpeakerStats
    device: torch.device
    engine: Engine
    #: ``asset/gpt`` of the model root (the ONNX Runtime backend converts its weights)
    gpt_dir: str = ""

    @property
    def has_decoder(self) -> bool:
        """Hidden states can be decoded (``use_decoder=True``)."""
        return self.audio.has_decoder

    @property
    def dvae(self) -> DVAE:
        """The DVAE (loaded on first use)."""
        return self.audio.dvae

    @property
    def dvae_loader(self) -> LazyDVAE:
        return self.audio.dvae_loader

    @property
    def decoder(self) -> Optional[Decoder]:
        """The torch Decoder (None on the float32 ONNX Runtime backend, or not loaded)."""
        return self.audio.decoder

    @property
    def vocos(self) -> Optional[torch.nn.Module]:
        """The torch Vocos (None on the float32 ONNX Runtime backend)."""
        return self.audio.vocos

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
        audio = load_decoders(
            root,
            dvae,
            device,
            hop_length=config.vocos.hop_length,
            int8=int8,
            on_ort=on_ort,
            load_decoder=load_decoder,
        )
        hook = quant.int8_layer_hook if int8 else None
        gpt_dir = os.path.dirname(path(GPT_WEIGHTS))
        gpt = None if on_ort else GPT.from_files(gpt_dir, path(GPT_WEIGHTS), compute, hook, device)
        speakers = SpeakerStats.from_file(path(SPK_STAT), g.hidden_size)
        embed.to(device).eval().requires_grad_(False)
        embed.to(compute)
        if int8:
            where = "onnxruntime" if on_ort else "torch"
            logger.info("int8 weights: the GPT (%s), Decoder and Vocos (torch)", where)
        return cls(
            config,
            tokenizer,
            embed,
            gpt,
            audio,
            speakers,
            device,
            build_engine(gpt, embed, device, engine, gpt_dir=gpt_dir),
            gpt_dir,
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
