"""Speed options of a loaded engine: int8 weights, compiled decode step, flash attention.

* ``quantize="int8"`` (CPU): the GPT's linear layers and its heads get int8 weights through
  torch's dynamic quantisation kernels (``torch.ao.nn.quantized.dynamic.Linear``: weights int8
  per output channel, activations quantised per call, fbgemm / oneDNN VNNI kernels). The
  pointwise layers of the Decoder's and Vocos' ConvNeXt blocks get the same treatment (the
  DVAE, whose encoder makes speaker samples, stays float32). Layers are replaced one by one,
  and :func:`int8_layer_hook` lets the GPT loader quantise each layer as it is read, so two
  full-precision copies of the GPT never exist.
* ``compile=True``: the fixed-shape decode step (:meth:`GPT.decode_static`) is compiled with
  ``torch.compile`` (inductor; ``mode="reduce-overhead"``, i.e. CUDA graphs, on CUDA).
* ``use_flash_attn``: the prefill uses FlashAttention-2 (package ``flash-attn``) when it is
  installed and the batch has no padding, else SDPA restricted to its flash / memory-efficient
  kernels (CUDA).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Optional

import torch
from torch import nn

from ..model.gpt import KVCache
from ..model.loading import release_free_memory

if TYPE_CHECKING:
    from ..models import Models

logger = logging.getLogger("chattts")

#: quantised dynamic linear layers need a kernel library; "x86" picks fbgemm / oneDNN per shape
QUANTIZED_ENGINES = ("x86", "fbgemm", "onednn")


def _select_quantized_engine() -> None:
    supported = torch.backends.quantized.supported_engines
    if torch.backends.quantized.engine in QUANTIZED_ENGINES:
        return
    for name in QUANTIZED_ENGINES:
        if name in supported:
            torch.backends.quantized.engine = name
            return
    raise RuntimeError(f"quantize='int8': no int8 kernel library in this torch ({supported})")


def _full_range_activations() -> bool:
    """8-bit (not 7-bit) activations are safe where the int8 dot product does not saturate:
    with VNNI (``vpdpbusd``) or AMX; without them fbgemm needs ``reduce_range``."""
    cpu = getattr(torch._C, "_cpu", None)
    checks = ("_is_avx512_vnni_supported", "_is_amx_tile_supported")
    return cpu is not None and any(getattr(cpu, c, lambda: False)() for c in checks)


class Int8Linear(nn.Module):
    """``x @ W.T + b`` with int8 weights (symmetric, per output channel) through torch's
    dynamic-quantisation kernels: x (..., in) float32 is quantised per call (one scale per
    call), multiplied in int8 and returned as float32 (..., out).

    Unlike ``torch.ao.nn.quantized.dynamic.Linear``, activations keep their full 8 bits on
    CPUs with VNNI (the ``reduce_range`` of that module halves their resolution).
    """

    def __init__(self, linear: nn.Linear, reduce_range: Optional[bool] = None) -> None:
        super().__init__()
        w = linear.weight.detach().float()
        scale = (w.abs().amax(dim=1).clamp(min=1e-8) / 127.0).double()
        zero = torch.zeros(w.shape[0], dtype=torch.long)
        qweight = torch.quantize_per_channel(w, scale, zero, 0, torch.qint8)
        bias = None if linear.bias is None else linear.bias.detach().float().clone()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.packed = torch.ops.quantized.linear_prepack(qweight, bias)
        self._op = torch.ops.quantized.linear_dynamic.default  # no per-call overload lookup
        self.reduce_range = not _full_range_activations() if reduce_range is None else reduce_range

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._op(x, self.packed, self.reduce_range)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def int8_linear(linear: nn.Linear) -> nn.Module:
    """An :class:`Int8Linear` copy of ``linear``."""
    return Int8Linear(linear)


def quantize_int8(module: nn.Module, skip: tuple[nn.Module, ...] = ()) -> nn.Module:
    """Replace every ``nn.Linear`` inside ``module`` (not in ``skip``) by :func:`int8_linear`.

    In place, one layer at a time: the float weights of a layer are freed as soon as it is
    replaced. Returns ``module`` (or its replacement when it is itself a linear layer).
    """
    _select_quantized_engine()
    if type(module) is nn.Linear:
        return int8_linear(module)
    for name, child in list(module.named_children()):
        if any(child is s for s in skip):
            continue
        if type(child) is nn.Linear:
            setattr(module, name, int8_linear(child))
            del child
        else:
            quantize_int8(child, skip)
    return module


def int8_layer_hook(layer: nn.Module) -> None:
    """For :meth:`GPT.from_files`: quantise one decoder layer right after it is loaded."""
    if layer.input_layernorm.weight.dtype != torch.float32:
        raise ValueError("quantize='int8' needs dtype='float32' activations")
    quantize_int8(layer)
    # the layer's float weights are freed now: give them back before the next layer is read
    # (glibc would otherwise keep them in its heap and the peak would grow layer by layer)
    release_free_memory()


def _own_memory(module: nn.Module) -> None:
    """Copy the tensors left in ``module`` out of their weight file's memory map.

    Once nothing points into the map it is unmapped, and the pages that quantisation read
    leave the process's resident memory.
    """
    with torch.no_grad():
        for p in module.parameters():
            p.data = p.data.clone()
        for name, b in list(module.named_buffers()):
            owner = module.get_submodule(name.rpartition(".")[0]) if "." in name else module
            setattr(owner, name.rpartition(".")[2], b.clone())


def _is_int8(gpt: nn.Module) -> bool:
    return any(isinstance(m, Int8Linear) for m in gpt.modules())


def _has_float_linear(module: nn.Module) -> bool:
    return any(type(m) is nn.Linear for m in module.modules())


def int8_embed_heads(embed: nn.Module) -> None:
    """int8 weights for the text head and the stacked code heads (after ``fold_weight_norm``)."""
    embed.head_text = quantize_int8(embed.head_text)
    if embed.code_head_weight is not None and embed.code_head is None:
        stacked = nn.Linear(embed.hidden_size, embed.code_head_weight.shape[0], bias=False)
        stacked.weight = nn.Parameter(embed.code_head_weight, requires_grad=False)
        embed.code_head = int8_linear(stacked)
    release_free_memory()


def int8_decoder(decoder: nn.Module) -> None:
    """int8 pointwise layers for the Decoder's ConvNeXt blocks."""
    if _has_float_linear(decoder):
        _own_memory(quantize_int8(decoder))
        release_free_memory()


def int8_vocos(vocos: nn.Module) -> None:
    """int8 pointwise layers for Vocos' backbone (its ISTFT head stays float32)."""
    backbone = getattr(vocos, "backbone", None)
    if backbone is not None and _has_float_linear(backbone):
        quantize_int8(backbone)
        _own_memory(vocos)
        release_free_memory()


def check_int8(device: torch.device, dtype: torch.dtype) -> None:
    """``quantize="int8"`` needs the CPU and float32 activations."""
    if device.type != "cpu":
        raise ValueError("quantize='int8' runs on the CPU only; use dtype='bfloat16' on GPUs")
    if dtype != torch.float32:
        raise ValueError("quantize='int8' needs dtype='float32' activations")


def apply_int8(models: Models) -> None:
    """int8 weights for the GPT layers, its heads, Decoder and Vocos (those not yet int8).

    ``Models.load(quantize="int8")`` already quantises each module as it is loaded, so that
    the float weights of one module at most are in memory besides the int8 ones.
    """
    check_int8(models.device, models.gpt.dtype)
    gpt = models.gpt
    if _has_float_linear(gpt.body.layers):
        quantize_int8(gpt.body.layers)
    gpt.refresh_blocks()
    int8_embed_heads(models.embed)
    if models.decoder is not None:
        int8_decoder(models.decoder)
    int8_vocos(models.vocos)
    logger.info("int8 weights: GPT layers and heads, Decoder, Vocos backbone")


def _mark_static(cache: KVCache) -> None:
    """CUDA graphs replay at fixed addresses: mark the cache tensors as such."""
    mark = getattr(torch._dynamo, "mark_static_address", None)
    if mark is not None:
        for t in (cache.k, cache.v, cache.key_mask, cache.positions, cache.write_pos):
            mark(t)


def apply_compile(models: Models) -> None:
    """Compile the fixed-shape decode step; the engine switches to it."""
    engine, gpt = models.engine, models.gpt
    if _is_int8(gpt):
        logger.warning(
            "compile=True: torch.compile cannot trace the dynamic int8 kernels; "
            "the int8 decode step runs uncompiled"
        )
        return
    cuda = models.device.type == "cuda"
    mode = "reduce-overhead" if cuda else None
    step = gpt.decode_static
    if getattr(step, "_chattts_compiled", False):
        return
    compiled = torch.compile(step, mode=mode, dynamic=False, fullgraph=True)
    compiled._chattts_compiled = True  # type: ignore[attr-defined]
    gpt.decode_static = compiled  # the instance attribute shadows the method
    engine.static_decode = True
    engine.clear_caches()
    if cuda:
        engine.on_new_static_cache = _mark_static
    logger.info("decode step compiled (%s)", mode or "default")


def _flash_prefill(q, k, v, mask, scale, gqa):
    """FlashAttention-2 for an unpadded prompt, SDPA (flash / efficient kernels) otherwise."""
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if mask is None and q.dtype in (torch.float16, torch.bfloat16):
        try:
            from flash_attn import flash_attn_func
        except ImportError:
            flash_attn_func = None
        if flash_attn_func is not None:
            out = flash_attn_func(
                q.transpose(1, 2),
                k.transpose(1, 2),
                v.transpose(1, 2),
                softmax_scale=scale,
                causal=True,
            )
            return out.transpose(1, 2)
    backends = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
    with sdpa_kernel(backends):
        if mask is None:
            return F.scaled_dot_product_attention(
                q, k, v, is_causal=True, scale=scale, enable_gqa=gqa
            )
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=gqa)


def apply_flash_attn(models: Models) -> None:
    if models.device.type != "cuda":
        logger.warning("use_flash_attn: flash attention needs CUDA; using the default kernel")
        return
    models.gpt.prefill_attention = _flash_prefill
    logger.info("prefill attention: FlashAttention-2 when installed, else SDPA flash")


def configure_engine(
    models: Models,
    compile: bool = False,
    quantize: Optional[str] = None,
    use_flash_attn: bool = False,
) -> None:
    """Apply the speed options of ``Chat.load`` to loaded models (see the module docstring)."""
    if quantize not in (None, "int8"):
        raise ValueError(f"quantize must be None or 'int8', not {quantize!r}")
    if models.gpt.dtype == torch.float16 and models.device.type == "cpu":
        logger.warning("dtype='float16' is slow on the CPU: use 'bfloat16' or quantize='int8'")
    if models.gpt.dtype != torch.float32 and models.device.type == "cpu":
        # the CPU attention kernel is several times slower on bfloat16 than on float32
        # (measured: 710 vs 199 µs per layer at batch 8): keep the cache in float32
        models.gpt.cache_dtype = torch.float32
    if quantize == "int8":
        apply_int8(models)
    if use_flash_attn:
        apply_flash_attn(models)
    if compile:
        apply_compile(models)
