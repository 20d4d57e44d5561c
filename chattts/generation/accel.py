"""Speed options of a loaded engine: int8 weights, compiled decode step, flash attention."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Optional

import torch
from torch import nn

if TYPE_CHECKING:
    from ..pipeline import Models

logger = logging.getLogger("chattts")


def quantize_int8(module: nn.Module) -> nn.Module:
    """Dynamic int8 weights for every ``nn.Linear`` of ``module`` (CPU), in place.

    Uses torch's maintained dynamic quantisation path (fbgemm / onednn kernels); activations
    stay float and are quantised per call. Layers are replaced one by one, so peak memory
    never holds two float copies of the module.
    """
    import warnings

    from torch.ao.nn.quantized.dynamic import Linear as DynLinear

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, child in list(module.named_children()):
            if type(child) is nn.Linear:
                q = DynLinear(
                    child.in_features,
                    child.out_features,
                    bias_=child.bias is not None,
                    dtype=torch.qint8,
                )
                q.set_weight_bias(
                    torch.quantize_per_channel(
                        child.weight.detach().float(),
                        *_per_channel_qparams(child.weight.detach().float()),
                        0,
                        torch.qint8,
                    ),
                    None if child.bias is None else child.bias.detach().float(),
                )
                setattr(module, name, q)
                del child
            else:
                quantize_int8(child)
    return module


def _per_channel_qparams(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel scales (and zero points) for int8 weights."""
    scale = w.abs().amax(dim=1).clamp(min=1e-8) / 127.0
    return scale.double(), torch.zeros(w.shape[0], dtype=torch.long)


def configure_engine(
    models: Models,
    compile: bool = False,
    quantize: Optional[str] = None,
    use_flash_attn: bool = False,
) -> None:
    """Apply the speed options of ``Chat.load`` to loaded models."""
    engine = models.engine
    if quantize == "int8":
        if models.device.type != "cpu":
            raise ValueError("quantize='int8' runs on the CPU only; use dtype='bfloat16' on GPUs")
        if models.gpt.body.norm.weight.dtype != torch.float32:
            raise ValueError("quantize='int8' needs dtype='float32' activations")
        quantize_int8(models.gpt.body.layers)
        models.embed.head_text = _wrap_quantized(models.embed.head_text)
        for i in range(len(models.embed.head_code)):
            models.embed.head_code[i] = _wrap_quantized(models.embed.head_code[i])
        logger.info("GPT linear layers and heads quantised to int8")
    if use_flash_attn:
        if models.device.type == "cuda":
            torch.backends.cuda.enable_flash_sdp(True)
            logger.info("flash attention enabled through SDPA")
        else:
            logger.warning("use_flash_attn: flash attention needs CUDA; using the default kernel")
    if compile:
        mode = "reduce-overhead" if models.device.type == "cuda" else None
        engine.decode_fn = torch.compile(models.gpt.decode, mode=mode, dynamic=None)
        engine.static_decode = True
        logger.info("decode step compiled (%s)", mode or "default")


def _wrap_quantized(linear: nn.Module) -> nn.Module:
    holder = nn.Sequential(linear)
    quantize_int8(holder)
    return holder[0]
