"""The GPT body: LLaMA layers run over a KV cache allocated once per generation.

The weights live in plain modules with the checkpoint's names (:mod:`chattts.model.llama`);
the forward pass over them is this module's. The constructor builds every layer, each layer's
q/k/v projections fused into one linear layer and its gate/up projections into another
(fewer, larger matrix products per step; with int8 weights, fewer activation quantisations).

One layer loop (:meth:`GPT.forward`) serves the prompt and every decode step; the cache
(:mod:`chattts.model.cache`: :class:`KVCache`, :class:`StaticKVCache`) decides where keys and
values go, which positions a query sees and with which rotary positions. A padded prompt is
right-aligned for the layers (each row's real tokens at positions 0 … L−1), so every row of a
cache has its own length and rows can join a running batch.
"""

from __future__ import annotations

import os
from typing import Callable, NamedTuple, Optional

import torch
from torch import nn

from ..config import GPTConfig, read_gpt_json
from .cache import KVCache, PromptAttention, StaticKVCache, causal_attention
from .llama import (
    LayerHook,
    LlamaBody,
    fuse_layer,
    load_layer_by_layer,
    rms_norm,
    rope_inverse_frequencies,
    rope_tables,
)

__all__ = [
    "GPT",
    "KVCache",
    "PromptAttention",
    "StaticKVCache",
    "causal_attention",
    "right_aligned",
]


def right_alignment(mask: torch.Tensor) -> Optional[torch.Tensor]:
    """For a (B, T) bool mask of real tokens, the (B, T) order that puts each row's real
    tokens first (in their order), or None when every row is already right-padded."""
    if not bool((mask[:, 1:] & ~mask[:, :-1]).any()):
        return None
    return torch.argsort((~mask).to(torch.int8), dim=-1, stable=True)


def right_aligned(
    embeds: torch.Tensor, attention_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """embeds (B, T, H) with any padding, attention_mask (B, T) 1 on real tokens -> embeds
    with each row's real tokens first (B, T, H) and the rows' lengths (B,) int64.

    Raises:
        ValueError: a row without any real token.
    """
    mask = attention_mask.bool()
    lengths = mask.sum(-1)
    if bool((lengths == 0).any()):
        raise ValueError("a prompt row without any real token")
    order = right_alignment(mask)
    if order is not None:
        embeds = embeds.gather(1, order[..., None].expand_as(embeds))
    return embeds, lengths


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of x (B, T, heads, d) with cos, sin (B, T, 1, d)."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


class _Layer(NamedTuple):
    """What one (fused, possibly quantised) decoder layer runs per pass; built once, when the
    GPT is complete. Forward methods are bound directly: a step skips ``nn.Module.__call__``
    (no hooks are used)."""

    ln1: torch.Tensor
    ln1_eps: float
    qkv: Callable[[torch.Tensor], torch.Tensor]
    o: Callable[[torch.Tensor], torch.Tensor]
    ln2: torch.Tensor
    ln2_eps: float
    gate_up: Callable[[torch.Tensor], torch.Tensor]
    down: Callable[[torch.Tensor], torch.Tensor]
    act: Callable[[torch.Tensor], torch.Tensor]

    @classmethod
    def of(cls, layer: nn.Module) -> _Layer:
        act = layer.mlp.act_fn
        return cls(
            layer.input_layernorm.weight,
            layer.input_layernorm.variance_epsilon,
            layer.self_attn.qkv_proj.forward,
            layer.self_attn.o_proj.forward,
            layer.post_attention_layernorm.weight,
            layer.post_attention_layernorm.variance_epsilon,
            layer.mlp.gate_up_proj.forward,
            layer.mlp.down_proj.forward,
            act.forward if isinstance(act, nn.Module) else act,
        )


class GPT(nn.Module):
    """The LLaMA body fed input embeddings; hidden states after the final RMSNorm.

    Complete when built: every layer is in place, fused and (with ``layer_hook``) quantised.

    Args:
        config: the body's hyper-parameters (:func:`chattts.config.read_gpt_json`).
        weights_path: the checkpoint's safetensors (``asset/gpt/model.safetensors``), read
            strictly one layer at a time; None: randomly initialised layers.
        dtype: the weights' (and activations') dtype.
        layer_hook: run on each fused layer right after its weights are in place (e.g.
            :func:`chattts.model.quant.int8_layer_hook`).
        device: where the GPT goes (default: the CPU).
    """

    def __init__(
        self,
        config: GPTConfig,
        weights_path: Optional[str] = None,
        *,
        dtype: torch.dtype = torch.float32,
        layer_hook: Optional[LayerHook] = None,
        device: Optional[torch.device] = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.num_layers = config.num_hidden_layers
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim or config.hidden_size // self.num_heads
        self.hidden_size = config.hidden_size
        self.scaling = self.head_dim**-0.5
        self.gqa = self.num_kv_heads != self.num_heads
        if weights_path is None:
            self.body = LlamaBody(config, self.head_dim).to(dtype=dtype)
            for layer in self.body.layers:
                fuse_layer(layer)
                if layer_hook is not None:
                    layer_hook(layer)
        else:
            with torch.device("meta"):  # shapes only: the file's tensors are assigned
                self.body = LlamaBody(config, self.head_dim)
            self.body.to(dtype=dtype)
            load_layer_by_layer(self.body, weights_path, layer_hook)
        if device is not None:
            self.body.to(device)
        self._rope: Optional[tuple[torch.Tensor, torch.Tensor]] = None
        #: what each layer runs per pass (built once, from the finished layers)
        self._layers: tuple[_Layer, ...] = tuple(_Layer.of(layer) for layer in self.body.layers)
        self.eval().requires_grad_(False)

    @classmethod
    def from_files(
        cls,
        config_dir: str,
        weights_path: str,
        dtype: torch.dtype = torch.float32,
        layer_hook: Optional[LayerHook] = None,
        device: Optional[torch.device] = None,
    ) -> GPT:
        """Build from ``asset/gpt`` (its ``config.json``) and load its safetensors strictly.

        Layers are read from the file one at a time into process memory (not a memory map,
        whose 4 KiB file pages stream more slowly than anonymous memory on a bandwidth-bound
        step), fused as each loads; ``layer_hook`` (e.g. int8 quantisation) runs on each layer
        right after it is loaded, so the full-precision weights of the whole body are never in
        memory at once. ``device``: where the GPT goes.
        """
        config = read_gpt_json(os.path.join(config_dir, "config.json"))
        return cls(config, weights_path, dtype=dtype, layer_hook=layer_hook, device=device)

    @property
    def dtype(self) -> torch.dtype:
        """The compute dtype of activations."""
        return self.body.norm.weight.dtype

    def rope_tables(self, size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin tables (≥ size, head_dim) in the compute dtype, built once and grown."""
        tables = self._rope
        if tables is None or tables[0].shape[0] < size or tables[0].device != device:
            n = max(size, self.config.max_position_embeddings)
            if tables is not None:
                n = max(n, 2 * tables[0].shape[0])
            inv_freq = rope_inverse_frequencies(self.config, self.head_dim).to(device)
            c, s = rope_tables(inv_freq, n)
            tables = self._rope = (c.to(self.dtype), s.to(self.dtype))
        return tables

    def new_cache(
        self,
        batch: int,
        capacity: int,
        device: torch.device,
        *,
        dtype: Optional[torch.dtype] = None,
        static: bool = False,
        prompt_attention: Optional[PromptAttention] = None,
    ) -> KVCache:
        """An empty cache for ``batch`` rows and ``capacity`` positions per row.

        Args:
            dtype: of keys and values (default: the compute dtype).
            static: a :class:`StaticKVCache` (fixed-shape steps), zeroed.
            prompt_attention: the prompt's attention kernel (default: SDPA).
        """
        device = torch.device(device)
        shape = (self.num_layers, batch, self.num_kv_heads, capacity, self.head_dim)
        alloc = torch.zeros if static else torch.empty
        dtype = dtype or self.dtype
        cos, sin = self.rope_tables(capacity + 1, device)
        return (StaticKVCache if static else KVCache)(
            alloc(shape, dtype=dtype, device=device),
            alloc(shape, dtype=dtype, device=device),
            torch.zeros(batch, dtype=torch.long, device=device),
            cos,
            sin,
            prompt_attention,
        )

    def forward(
        self,
        embeds: torch.Tensor,
        cache: KVCache,
        attention_mask: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Run T new positions through every layer, writing their keys and values to ``cache``.

        Args:
            embeds: (B, T, H) input embeddings: the prompts of every row of ``cache`` (with
                ``attention_mask``; capacity ≥ T) or one decode step of every row (T = 1).
            cache: the rows' cache (:meth:`new_cache`, or a view of some of its rows).
            attention_mask: (B, T), 1 on real prompt tokens (any padding: the layers see each
                row's real tokens first, at positions 0 … L−1); None for a decode step.

        Returns:
            (B, T, H) hidden states after the final norm, in the input's layout (the states
            at padded positions are meaningless).
        """
        t = embeds.shape[1]
        lengths = order = None
        if attention_mask is not None:
            mask = attention_mask.bool()
            lengths = mask.sum(-1)
            order = right_alignment(mask)
            if order is not None:
                embeds = embeds.gather(1, order[..., None].expand_as(embeds))
        cos, sin, mask = cache.begin(t, lengths)
        x = embeds
        for i, layer in enumerate(self._layers):
            q, k, v = self._qkv(layer, x, cos, sin)
            keys, values = cache.update(i, k, v)
            o = cache.attend(q, keys, values, mask, self.scaling, self.gqa)
            x = self._finish(layer, x, o.to(x.dtype))
        cache.advance(t)
        out = self.body.norm(x)
        if order is not None:  # back to the input's layout
            out = torch.empty_like(out).scatter_(1, order[..., None].expand_as(out), out)
        return out

    def _qkv(self, layer: _Layer, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """q (B, nh, T, d), k and v (B, n_kv, T, d) of one layer, rotary applied.

        cos, sin: (B or 1, T, 1, d). q and k are rotated together (one set of element-wise ops).
        """
        b, t, _ = x.shape
        d, nq, nkv = self.head_dim, self.num_heads, self.num_kv_heads
        qkv = layer.qkv(rms_norm(x, layer.ln1, layer.ln1_eps)).view(b, t, nq + 2 * nkv, d)
        qk = _rotate(qkv[:, :, : nq + nkv], cos, sin).transpose(1, 2)
        return qk[:, :nq], qk[:, nq:], qkv[:, :, nq + nkv :].transpose(1, 2)

    def _finish(self, layer: _Layer, x: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        """Output projection, residual, MLP and residual of one layer; o (B, nh, T, d)."""
        b, _, t, _ = o.shape
        x = x + layer.o(o.transpose(1, 2).reshape(b, t, -1))
        gate, up = layer.gate_up(rms_norm(x, layer.ln2, layer.ln2_eps)).chunk(2, dim=-1)
        return x + layer.down(layer.act(gate) * up)
