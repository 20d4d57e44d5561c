"""The GPT body: LLaMA layers run over a static KV cache (REFERENCE.md §4).

The weights live in plain modules with the checkpoint's names (:mod:`chattts.model.llama`);
the forward pass over them is this module's, so the KV cache is allocated once per generation
and a decode step writes one position in place. After loading, each layer's q/k/v projections
are fused into one linear layer and its gate/up projections into another (fewer, larger matrix
products per step; with int8 weights, fewer activation quantisations).

Two decode steps exist:

* :meth:`GPT.decode` (eager): attention over the positions written so far (a slice of the
  cache), the fastest on the CPU;
* :meth:`GPT.decode_static`: fixed shapes for ``torch.compile`` — attention over the whole
  cache with a key mask, cache writes by ``index_copy_`` at a position *tensor*, so one compiled
  graph (and on CUDA one CUDA graph) serves every step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..config import GPTConfig, read_gpt_json
from .llama import (
    LayerHook,
    LlamaBody,
    fuse_layer,
    load_layer_by_layer,
    rms_norm,
    rope_inverse_frequencies,
    rope_tables,
)


@dataclass
class KVCache:
    """Keys and values of every layer for a whole generation, allocated once.

    Attributes:
        k, v: (L, B, n_kv, T_max, head_dim).
        key_mask: (B, T_max) bool, True where a position holds a real token.
        positions: (B,) int64, the rotary position of each row's next token.
        write_pos: (1,) int64, the cache index the next decode step writes (= ``length``;
            a tensor so that a compiled step does not specialise on it).
        length: number of positions written so far.
        padded: some prompt positions are padding (decode steps then need the key mask).
    """

    k: torch.Tensor
    v: torch.Tensor
    key_mask: torch.Tensor
    positions: torch.Tensor
    write_pos: torch.Tensor
    length: int = 0
    padded: bool = False

    @property
    def capacity(self) -> int:
        return self.k.shape[3]

    @property
    def batch(self) -> int:
        return self.k.shape[1]

    def select(self, rows: torch.Tensor) -> KVCache:
        """A cache holding only ``rows`` (batch indices), for dropping finished items.

        Only the positions written so far are copied.
        """
        n = self.length
        k = self.k.new_empty((self.k.shape[0], len(rows), *self.k.shape[2:]))
        v = torch.empty_like(k)
        k[:, :, :, :n] = self.k[:, rows, :, :n]
        v[:, :, :, :n] = self.v[:, rows, :, :n]
        return KVCache(
            k,
            v,
            self.key_mask[rows],
            self.positions[rows],
            self.write_pos.clone(),
            self.length,
            self.padded,
        )


class _Block:
    """The tensors one decoder layer uses per step (after fusion)."""

    __slots__ = ("ln1", "ln1_eps", "qkv", "o", "ln2", "ln2_eps", "gate_up", "down", "act")

    def __init__(self, layer: nn.Module) -> None:
        self.ln1 = layer.input_layernorm.weight
        self.ln1_eps = layer.input_layernorm.variance_epsilon
        # bound forward methods: the step skips nn.Module's call machinery (no hooks are used)
        self.qkv = layer.self_attn.qkv_proj.forward
        self.o = layer.self_attn.o_proj.forward
        self.ln2 = layer.post_attention_layernorm.weight
        self.ln2_eps = layer.post_attention_layernorm.variance_epsilon
        self.gate_up = layer.mlp.gate_up_proj.forward
        self.down = layer.mlp.down_proj.forward
        act = layer.mlp.act_fn
        self.act = act.forward if isinstance(act, nn.Module) else act


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of x (B, T, heads, d) with cos, sin (B, T, 1, d)."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


class GPT(nn.Module):
    """The LLaMA body fed input embeddings; hidden states after the final RMSNorm.

    Args:
        config: the body's hyper-parameters (:func:`chattts.config.read_gpt_json`).
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.num_layers = config.num_hidden_layers
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim or config.hidden_size // self.num_heads
        self.hidden_size = config.hidden_size
        self.scaling = self.head_dim**-0.5
        self.body = LlamaBody(config, self.head_dim)
        self._rope_cos: Optional[torch.Tensor] = None
        self._rope_sin: Optional[torch.Tensor] = None
        self._blocks: list[_Block] = []
        #: dtype of the KV cache (None: the compute dtype); bfloat16 on the CPU keeps a float32
        #: cache, the CPU attention kernel being much faster in float32
        self.cache_dtype: Optional[torch.dtype] = None
        #: attention of the prefill, ``(q, k, v, mask, scale, gqa) -> out`` (default: SDPA;
        #: ``use_flash_attn`` may replace it).
        self.prefill_attention: Optional[Callable] = None

    @classmethod
    def from_files(
        cls,
        config_dir: str,
        weights_path: str,
        dtype: torch.dtype = torch.float32,
        layer_hook: Optional[LayerHook] = None,
    ) -> GPT:
        """Build from ``asset/gpt`` (its ``config.json``) and load its safetensors strictly.

        Projections are fused as each layer loads. Layers are read from the file one at a
        time into process memory (not a memory map, whose 4 KiB file pages stream more slowly
        than anonymous memory on a bandwidth-bound step); ``layer_hook`` (e.g. int8
        quantisation) runs on each layer right after it is loaded, so the full-precision
        weights of the whole body are never in memory at once.
        """
        config = read_gpt_json(os.path.join(config_dir, "config.json"))
        with torch.device("meta"):
            model = cls(config)
        model.body.to(dtype=dtype)
        load_layer_by_layer(model.body, weights_path, layer_hook)
        model.refresh_blocks()
        return model.eval()

    def refresh_blocks(self) -> None:
        """Re-read the per-layer modules (after fusing or replacing linear layers)."""
        for layer in self.body.layers:
            fuse_layer(layer)
        self._blocks = [_Block(layer) for layer in self.body.layers]

    @property
    def dtype(self) -> torch.dtype:
        """The compute dtype of activations and cache."""
        return self.body.norm.weight.dtype

    # ---- rotary tables ----------------------------------------------------------------------

    def rope_tables(self, size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin tables (≥ size, head_dim) in the compute dtype, built once and grown."""
        cos = self._rope_cos
        if cos is None or cos.shape[0] < size or cos.device != device:
            n = max(size, self.config.max_position_embeddings)
            if cos is not None:
                n = max(n, 2 * cos.shape[0])
            inv_freq = rope_inverse_frequencies(self.config, self.head_dim).to(device)
            c, s = rope_tables(inv_freq, n)
            self._rope_cos, self._rope_sin = c.to(self.dtype), s.to(self.dtype)
        assert self._rope_cos is not None and self._rope_sin is not None
        return self._rope_cos, self._rope_sin

    # ---- cache -----------------------------------------------------------------------------

    def new_cache(
        self, batch: int, capacity: int, device: torch.device, zeroed: bool = False
    ) -> KVCache:
        """An empty cache for ``batch`` rows and ``capacity`` positions.

        ``zeroed``: fill keys and values with zeros (needed when attention reads positions
        not yet written, as :meth:`decode_static` does; the eager step never reads them).
        """
        shape = (self.num_layers, batch, self.num_kv_heads, capacity, self.head_dim)
        alloc = torch.zeros if zeroed else torch.empty
        self.rope_tables(capacity + 1, device)
        dtype = self.cache_dtype or self.dtype
        return KVCache(
            k=alloc(shape, dtype=dtype, device=device),
            v=alloc(shape, dtype=dtype, device=device),
            key_mask=torch.zeros(batch, capacity, dtype=torch.bool, device=device),
            positions=torch.zeros(batch, dtype=torch.long, device=device),
            write_pos=torch.zeros(1, dtype=torch.long, device=device),
        )

    # ---- forward ---------------------------------------------------------------------------

    def _qkv(self, blk: _Block, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """q (B, nh, T, d), k and v (B, n_kv, T, d) of one layer, rotary applied.

        cos, sin: (B, T, 1, d). q and k are rotated together (one set of element-wise ops).
        """
        b, t, _ = x.shape
        d, nq, nkv = self.head_dim, self.num_heads, self.num_kv_heads
        qkv = blk.qkv(rms_norm(x, blk.ln1, blk.ln1_eps)).view(b, t, nq + 2 * nkv, d)
        qk = _rotate(qkv[:, :, : nq + nkv], cos, sin).transpose(1, 2)
        return qk[:, :nq], qk[:, nq:], qkv[:, :, nq + nkv :].transpose(1, 2)

    def _finish(self, blk: _Block, x: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        """Output projection, residual, MLP and residual of one layer; o (B, nh, T, d)."""
        b, _, t, _ = o.shape
        x = x + blk.o(o.transpose(1, 2).reshape(b, t, -1))
        gate, up = blk.gate_up(rms_norm(x, blk.ln2, blk.ln2_eps)).chunk(2, dim=-1)
        return x + blk.down(blk.act(gate) * up)

    def prefill(
        self, embeds: torch.Tensor, attention_mask: torch.Tensor, cache: KVCache
    ) -> torch.Tensor:
        """Run the prompt and fill the cache.

        Args:
            embeds: (B, T, H) input embeddings.
            attention_mask: (B, T), 1 on real tokens (left padding is 0).
            cache: an empty cache with capacity ≥ T.

        Returns:
            (B, T, H) hidden states after the final norm.
        """
        b, t, _ = embeds.shape
        mask = attention_mask.bool()
        positions = mask.long().cumsum(-1) - 1
        positions = positions.masked_fill(~mask, 1)
        cos_t, sin_t = self.rope_tables(int(positions.max()) + 1, embeds.device)
        cos, sin = cos_t[positions][:, :, None], sin_t[positions][:, :, None]
        padded = not bool(mask.all())
        allowed = None
        if padded:
            causal = torch.ones(t, t, dtype=torch.bool, device=embeds.device).tril()
            allowed = causal[None] & mask[:, None, :]
            # a padded query sees no real key: let it see itself so its row stays finite
            allowed |= torch.eye(t, dtype=torch.bool, device=embeds.device)[None]
            allowed = allowed[:, None]
        cache.key_mask[:, :t] = mask
        cache.key_mask[:, t:] = False
        cache.positions.copy_(positions[:, -1] + 1)
        gqa = self.num_kv_heads != self.num_heads
        attend = self.prefill_attention or _sdpa
        x = embeds
        for i, blk in enumerate(self._blocks):
            q, k, v = self._qkv(blk, x, cos, sin)
            cache.k[i, :, :, :t] = k
            cache.v[i, :, :, :t] = v
            x = self._finish(blk, x, attend(q, k, v, allowed, self.scaling, gqa))
        cache.length = t
        cache.padded = padded
        cache.write_pos.fill_(t)
        return self.body.norm(x)

    def decode(self, embeds: torch.Tensor, cache: KVCache, static: bool = False) -> torch.Tensor:
        """One step: (B, 1, H) embeddings of the new tokens -> (B, 1, H) hidden states.

        With ``static`` the step runs :meth:`decode_static` (fixed shapes, for compiled graphs).
        """
        if static:
            out = self.decode_static(
                embeds,
                cache.k,
                cache.v,
                cache.key_mask,
                cache.positions,
                cache.write_pos,
                self._rope_cos,
                self._rope_sin,
            )
        else:
            out = self._decode_eager(embeds, cache)
        cache.positions += 1
        cache.write_pos += 1
        cache.length += 1
        return out

    def _decode_eager(self, embeds: torch.Tensor, cache: KVCache) -> torch.Tensor:
        start = cache.length
        end = start + 1
        cache.key_mask[:, start] = True
        cos = self._rope_cos[cache.positions][:, None, None]  # (B, 1, 1, d)
        sin = self._rope_sin[cache.positions][:, None, None]
        mask = cache.key_mask[:, None, None, :end] if cache.padded else None
        gqa = self.num_kv_heads != self.num_heads
        x = embeds
        for i, blk in enumerate(self._blocks):
            q, k, v = self._qkv(blk, x, cos, sin)
            cache.k[i, :, :, start] = k[:, :, 0]
            cache.v[i, :, :, start] = v[:, :, 0]
            o = F.scaled_dot_product_attention(
                q.to(cache.k.dtype),
                cache.k[i, :, :, :end],
                cache.v[i, :, :, :end],
                attn_mask=mask,
                scale=self.scaling,
                enable_gqa=gqa,
            )
            x = self._finish(blk, x, o.to(x.dtype))
        return self.body.norm(x)

    def decode_static(
        self,
        embeds: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        key_mask: torch.Tensor,
        positions: torch.Tensor,
        write_pos: torch.Tensor,
        cos_table: torch.Tensor,
        sin_table: torch.Tensor,
    ) -> torch.Tensor:
        """A decode step with shapes independent of the step (what ``compile=True`` compiles).

        Args:
            embeds: (B, 1, H). k_cache, v_cache: (L, B, n_kv, T_max, d), updated in place at
            ``write_pos`` (1,); key_mask: (B, T_max) bool, set at ``write_pos``; positions:
            (B,) rotary positions; cos_table, sin_table: (≥ max position, d).

        Returns:
            (B, 1, H) hidden states. Attention spans all T_max positions, masked.
        """
        key_mask.index_fill_(1, write_pos, True)
        cos = cos_table.index_select(0, positions)[:, None, None]
        sin = sin_table.index_select(0, positions)[:, None, None]
        mask = key_mask[:, None, None, :]
        gqa = self.num_kv_heads != self.num_heads
        x = embeds
        for i, blk in enumerate(self._blocks):
            q, k, v = self._qkv(blk, x, cos, sin)
            k_layer, v_layer = k_cache[i], v_cache[i]
            k_layer.index_copy_(2, write_pos, k)
            v_layer.index_copy_(2, write_pos, v)
            o = F.scaled_dot_product_attention(
                q.to(k_layer.dtype),
                k_layer,
                v_layer,
                attn_mask=mask,
                scale=self.scaling,
                enable_gqa=gqa,
            )
            x = self._finish(blk, x, o.to(x.dtype))
        return self.body.norm(x)


def _sdpa(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: Optional[torch.Tensor],
    scale: float,
    gqa: bool,
) -> torch.Tensor:
    """Causal self-attention of a prompt: ``mask`` (B, 1, T, T) with padding, else None."""
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, enable_gqa=gqa)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=gqa)
