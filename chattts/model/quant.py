"""int8 weights for the CPU: every ``nn.Linear`` of the GPT, its heads, Decoder and Vocos.

Weights are int8 (symmetric, one scale per output channel) and run through torch's dynamic
quantisation kernels (``torch.ops.quantized.linear_dynamic``, fbgemm / oneDNN): activations
are quantised per call. The DVAE (whose encoder makes speaker samples) and Vocos' ISTFT head
stay float32. Quantisation happens once, while a model root is loaded: each module is
quantised right after it is read (the Embed's heads by its constructor), and
:func:`int8_layer_hook` lets the GPT loader quantise each layer as it is read, so two
full-precision copies of a module never exist (docs/engine.md, "int8"). The kernel library is
selected through :func:`chattts.runtime.use_int8_kernels`, the owner of process-wide settings.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..errors import UnsupportedOptionError
from ..runtime import use_int8_kernels
from .loading import release_free_memory


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
        use_int8_kernels()  # the process-wide kernel library: chattts.runtime's to select
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


def quantize_int8(module: nn.Module) -> nn.Module:
    """Replace every ``nn.Linear`` inside ``module`` by an :class:`Int8Linear` copy.

    In place, one layer at a time: the float weights of a layer are freed as soon as it is
    replaced. Returns ``module`` (or its replacement when it is itself a linear layer).
    """
    if type(module) is nn.Linear:
        return Int8Linear(module)
    for name, child in list(module.named_children()):
        if type(child) is nn.Linear:
            setattr(module, name, Int8Linear(child))
            del child
        else:
            quantize_int8(child)
    return module


def is_int8(module: nn.Module) -> bool:
    """Some layer of ``module`` has int8 weights."""
    return any(isinstance(m, Int8Linear) for m in module.modules())


def _has_float_linear(module: nn.Module) -> bool:
    return any(type(m) is nn.Linear for m in module.modules())


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


def check_int8(device: torch.device, dtype: torch.dtype) -> None:
    """``quantize="int8"`` needs the CPU and float32 activations."""
    if device.type != "cpu":
        raise UnsupportedOptionError(
            "quantize='int8' runs on the CPU only; use dtype='bfloat16' on GPUs"
        )
    if dtype != torch.float32:
        raise UnsupportedOptionError("quantize='int8' needs dtype='float32' activations")


def int8_layer_hook(layer: nn.Module) -> None:
    """For :meth:`GPT.from_files`: quantise one (float32) decoder layer right after it is
    loaded (the options were checked by :func:`check_int8` before loading began)."""
    quantize_int8(layer)
    # the layer's float weights are freed now: give them back before the next layer is read
    # (glibc would otherwise keep them in its heap and the peak would grow layer by layer)
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
