"""The one place the engine's speed options take effect (docs/engine.md, "Options").

:func:`build_engine` turns :class:`chattts.options.EngineOptions` into an :class:`Engine` over
a GPT backend. For torch, the cache dtype, the fixed-shape (compiled) step and the prompt's
attention kernel are constructor arguments of the backend; the compute dtype and int8 weights
are properties of the loaded modules (:meth:`chattts.models.Models.load` applies them while it
reads the files), here only checked against the options. For ONNX Runtime, the graph of the
checkpoint in the wanted precision comes from the conversion cache (:mod:`.ort_convert`).
"""

from __future__ import annotations

import logging
import os
from typing import Optional

import torch

from ..config import read_gpt_json
from ..errors import UnsupportedOptionError
from ..model.embed import Embed
from ..model.gpt import GPT
from ..model.quant import is_int8
from ..options import EngineOptions
from .backend import GPTBackend, TorchBackend, flash_prompt_attention
from .engine import Engine

logger = logging.getLogger("chattts")


def build_backend(
    gpt: Optional[GPT],
    device: torch.device,
    options: EngineOptions,
    *,
    gpt_dir: Optional[str] = None,
    fixed_shapes: Optional[bool] = None,
) -> GPTBackend:
    """The GPT backend ``options.backend`` names (``"auto"``: see
    :meth:`EngineOptions.resolved_backend`).

    Args:
        gpt: the loaded torch GPT (needed by the torch backend only).
        gpt_dir: ``asset/gpt`` (needed by ONNX Runtime, which converts its weights once).
        fixed_shapes: run the fixed-shape step even uncompiled (default: with ``compile``).
    """
    device = torch.device(device)
    if options.resolved_backend(device.type) == "onnxruntime":
        return _onnxruntime_backend(device, options, gpt_dir)
    if gpt is None:
        raise UnsupportedOptionError(
            "backend='torch': this model was loaded for ONNX Runtime without the torch GPT; "
            "load it again with backend='torch'"
        )
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


def _onnxruntime_backend(
    device: torch.device, options: EngineOptions, gpt_dir: Optional[str]
) -> GPTBackend:
    if device.type != "cpu":
        raise UnsupportedOptionError(
            f"backend='onnxruntime' runs on the CPU, not {device.type}: use backend='torch'"
        )
    if gpt_dir is None:
        raise UnsupportedOptionError("backend='onnxruntime' needs the model's gpt folder")
    if options.compile or options.use_flash_attn:
        logger.warning("compile and use_flash_attn apply to the torch backend only: ignored")
    from .ort_backend import OrtBackend
    from .ort_convert import converted_gpt

    precision = "int8" if options.quantize == "int8" else "fp32"
    graph = converted_gpt(gpt_dir, precision)
    logger.info("GPT on ONNX Runtime (%s weights): %s", precision, graph.path)
    config = read_gpt_json(os.path.join(gpt_dir, "config.json"))
    return OrtBackend.from_graph(graph.path, config, spinning=options.ort_spinning)


def build_engine(
    gpt: Optional[GPT],
    embed: Embed,
    device: torch.device,
    options: EngineOptions = EngineOptions(),  # noqa: B008 - frozen
    *,
    gpt_dir: Optional[str] = None,
    fixed_shapes: Optional[bool] = None,
) -> Engine:
    """An :class:`Engine` over the GPT (``gpt`` for torch, ``gpt_dir`` for ONNX Runtime) and
    ``embed`` with ``options`` applied.

    Raises:
        UnsupportedOptionError: ``options`` ask for another dtype or quantisation than the
            modules were loaded with, or a backend the loaded model cannot run.
    """
    backend = build_backend(gpt, device, options, gpt_dir=gpt_dir, fixed_shapes=fixed_shapes)
    return Engine(embed, backend, options)
