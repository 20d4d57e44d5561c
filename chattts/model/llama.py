"""The LLaMA decoder layers of the GPT, as plain torch modules (REFERENCE.md §4).

The modules carry the parameter names of the official checkpoint
(``layers.{i}.self_attn.q_proj.weight``, ``layers.{i}.mlp.gate_proj.weight``, ``norm.weight``...),
so ``asset/gpt/model.safetensors`` loads into them strictly; the forward pass over them is
:class:`chattts.model.gpt.GPT`'s. Nothing here imports transformers: loading the GPT costs
neither its import time (seconds) nor its memory (torch._dynamo and friends, ~170 MB).
"""

from __future__ import annotations

import os
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..config import GPTConfig
from ..errors import AssetNotFoundError, WeightsError
from .loading import load_strict


def rms_norm(x: torch.Tensor, weight: Optional[torch.Tensor], eps: float) -> torch.Tensor:
    """LLaMA's RMSNorm over the last dim, computed in float32 (as the reference does).

    In float32 this is one fused op; other dtypes are normalised in float32, then the weight
    is applied in the input dtype.
    """
    if x.dtype == torch.float32:
        return F.rms_norm(x, (x.shape[-1],), weight, eps)
    out = F.rms_norm(x.float(), (x.shape[-1],), None, eps).to(x.dtype)
    return out if weight is None else weight * out


class RMSNorm(nn.Module):
    """RMSNorm with a learned per-channel weight (H,)."""

    def __init__(self, hidden_size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.variance_epsilon)


class Attention(nn.Module):
    """The projections of one attention block (q/k/v: H -> heads · head_dim, o: back to H)."""

    def __init__(self, cfg: GPTConfig, head_dim: int) -> None:
        super().__init__()
        h, bias = cfg.hidden_size, cfg.attention_bias
        self.q_proj = nn.Linear(h, cfg.num_attention_heads * head_dim, bias=bias)
        self.k_proj = nn.Linear(h, cfg.num_key_value_heads * head_dim, bias=bias)
        self.v_proj = nn.Linear(h, cfg.num_key_value_heads * head_dim, bias=bias)
        self.o_proj = nn.Linear(cfg.num_attention_heads * head_dim, h, bias=bias)


class MLP(nn.Module):
    """SwiGLU feed-forward: down(silu(gate(x)) · up(x))."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        h, i, bias = cfg.hidden_size, cfg.intermediate_size, cfg.mlp_bias
        self.gate_proj = nn.Linear(h, i, bias=bias)
        self.up_proj = nn.Linear(h, i, bias=bias)
        self.down_proj = nn.Linear(i, h, bias=bias)
        self.act_fn = nn.SiLU()


class DecoderLayer(nn.Module):
    """One pre-norm LLaMA layer's parameters."""

    def __init__(self, cfg: GPTConfig, head_dim: int) -> None:
        super().__init__()
        self.self_attn = Attention(cfg, head_dim)
        self.mlp = MLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class LlamaBody(nn.Module):
    """The layers and final norm of the GPT (its token embedding is never used)."""

    def __init__(self, cfg: GPTConfig, head_dim: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            DecoderLayer(cfg, head_dim) for _ in range(cfg.num_hidden_layers)
        )
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


def rope_inverse_frequencies(cfg: GPTConfig, head_dim: int) -> torch.Tensor:
    """(head_dim / 2,) float32 inverse frequencies θ^(−2i/d) (divided by the linear factor)."""
    exponents = torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim
    inv_freq = 1.0 / (cfg.rope_theta**exponents)
    if cfg.rope_type == "linear":
        inv_freq = inv_freq / cfg.rope_factor
    return inv_freq


def rope_tables(inv_freq: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin (size, head_dim) float32 for positions 0..size-1 (halves repeated)."""
    positions = torch.arange(size, dtype=torch.float32, device=inv_freq.device)
    freqs = positions[:, None] * inv_freq[None, :]
    angles = torch.cat((freqs, freqs), dim=-1)
    return angles.cos(), angles.sin()


def _fuse_linear(parts: list[nn.Linear]) -> nn.Linear:
    """One ``nn.Linear`` whose output is the concatenation of ``parts``' outputs."""
    w = torch.cat([p.weight.detach() for p in parts], 0)
    bias = None
    if parts[0].bias is not None:
        bias = torch.cat([p.bias.detach() for p in parts], 0)
    fused = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None, device="meta")
    fused.weight = nn.Parameter(w, requires_grad=False)
    if bias is not None:
        fused.bias = nn.Parameter(bias, requires_grad=False)
    return fused


def fuse_layer(layer: DecoderLayer) -> None:
    """Replace q/k/v by one ``qkv_proj`` and gate/up by one ``gate_up_proj`` (in place).

    The separate layers are deleted, so only one copy of the weights stays alive.
    """
    attn, mlp = layer.self_attn, layer.mlp
    if not hasattr(attn, "qkv_proj"):
        attn.qkv_proj = _fuse_linear([attn.q_proj, attn.k_proj, attn.v_proj])
        del attn.q_proj, attn.k_proj, attn.v_proj
    if not hasattr(mlp, "gate_up_proj"):
        mlp.gate_up_proj = _fuse_linear([mlp.gate_proj, mlp.up_proj])
        del mlp.gate_proj, mlp.up_proj


#: A function applied to each layer right after its weights are loaded (and fused).
LayerHook = Callable[[nn.Module], None]


def load_layer_by_layer(body: LlamaBody, path: str, hook: Optional[LayerHook]) -> None:
    """Strictly load ``body`` from ``path`` one layer at a time, fusing and running ``hook``.

    The file may carry ``embed_tokens.weight`` and a ``model.`` prefix; both are ignored.
    Tensors are read with ``pread`` (not a memory map), so a layer's full-precision weights
    leave memory once the hook has replaced them.
    """
    from safetensors import safe_open

    if not os.path.isfile(path):
        raise AssetNotFoundError(f"model file not found: {path}")
    try:
        handle = safe_open(path, framework="pt", device="cpu", backend="pread")
    except Exception as e:  # safetensors raises several error types for bad files
        raise WeightsError(f"{path}: not a readable safetensors file ({e})") from e
    with handle as f:
        names = {(k[6:] if k.startswith("model.") else k): k for k in f.keys()}
        names.pop("embed_tokens.weight", None)
        own = set(body.state_dict().keys())
        unexpected = sorted(k for k in names if k not in own)
        if unexpected:
            raise WeightsError(f"{path}: unexpected tensor(s) {unexpected[:5]}")
        missing = sorted(k for k in own if k not in names)
        if missing:
            raise WeightsError(f"{path}: missing tensor(s) {missing[:5]}")

        def part(prefix: str) -> dict[str, torch.Tensor]:
            return {
                k[len(prefix) :]: f.get_tensor(v) for k, v in names.items() if k.startswith(prefix)
            }

        load_strict(body.norm, part("norm."), path, prefix="norm.")
        for i, layer in enumerate(body.layers):
            load_strict(layer, part(f"layers.{i}."), path, prefix=f"layers.{i}.")
            fuse_layer(layer)
            if hook is not None:
                hook(layer)
