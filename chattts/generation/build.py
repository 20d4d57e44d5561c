"""The one place the engine's speed options take effect (docs/engine.md, "Options").

:func:`build_engine` turns :class:`chattts.options.EngineOptions` into an :class:`Engine` over
a GPT backend: the cache dtype, the fixed-shape (compiled) step and the prompt's attention
kernel are constructor arguments of the backend. The compute dtype and int8 weights are
properties of the loaded modules (:meth:`chattts.models.Models.load` applies them while it
reads the files); here they are only checked against the options.
"""

from __future__ import annotations

import logging
from typing import Optional

import torch

from ..errors import UnsupportedOptionError
from ..model.embed import Embed
from ..model.gpt import GPT
from ..model.quant import is_int8
from ..options import EngineOptions
from .backend import GPTBackend, TorchBackend, flash_prompt_attention
from .engine import Engine

logger = logging.getLogger("chattts")


def build_backend(
    gpt: GPT,
    device: torch.device,
    options: EngineOptions,
    *,
    fixed_shapes: Optional[bool] = None,
) -> GPTBackend:
    """The GPT backend ``options.backend`` names (``"auto"``: torch, the only one so far).

    ``fixed_shapes``: run the fixed-shape step even uncompiled (default: with ``compile``).
    """
    device = torch.device(device)
    if getattr(torch, options.dtype) != gpt.dtype:
        raise UnsupportedOptionError(
            f"dtype={options.dtype!r}: the GPT was loaded in {gpt.dtype}; the dtype is applied "
            "when the model is loaded"
        )
    int8 = options.quantize == "int8"
    if int8 != is_int8(gpt):
        raise UnsupportedOptionError(
            f"quantize={options.quantize!r}: int8 weights are applied when the model is loaded"
        )
    cache_dtype = None
    if gpt.dtype != torch.float32 and device.type == "cpu":
        if gpt.dtype == torch.float16:
            logger.warning("dtype='float16' is slow on the CPU: use 'bfloat16' or quantize='int8'")
        # the CPU attention kernel is several times slower on bfloat16 than on float32
        # (measured: 710 vs 199 µs per layer at batch 8): keep the cache in float32
        cache_dtype = torch.float32
    compile = options.compile
    if compile and int8:
        logger.warning(
            "compile=True: torch.compile cannot trace the dynamic int8 kernels; "
            "the int8 decode step runs uncompiled"
        )
        compile = False
    attention = None
    if options.use_flash_attn:
        if device.type == "cuda":
            attention = flash_prompt_attention
            logger.info("prefill attention: FlashAttention-2 when installed, else SDPA flash")
        else:
            logger.warning("use_flash_attn: flash attention needs CUDA; using the default kernel")
    return TorchBackend(
        gpt,
        device,
        cache_dtype=cache_dtype,
        fixed_shapes=compile if fixed_shapes is None else fixed_shapes,
        compile=compile,
        prompt_attention=attention,
    )


def build_engine(
    gpt: GPT,
    embed: Embed,
    device: torch.device,
    options: EngineOptions = EngineOptions(),  # noqa: B008 - frozen
    *,
    fixed_shapes: Optional[bool] = None,
) -> Engine:
    """An :class:`Engine` over ``gpt`` and ``embed`` with ``options`` applied.

    Raises:
        UnsupportedOptionError: ``options`` ask for another dtype or quantisation than the
            modules were loaded with.
    """
    backend = build_backend(gpt, device, options, fixed_shapes=fixed_shapes)
    return Engine(embed, backend, options)
