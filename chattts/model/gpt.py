"""The GPT body: LLaMA layers run over a KV cache allocated once per generation.

The weights live in plain modules with the checkpoint's names (:mod:`chattts.model.llama`);
the forward pass over them is this module's. While the GPT is read each layer's q/k/v
projections are fused into one linear layer and its gate/up projections into another (fewer,
larger matrix products per step; with int8 weights, fewer activation quantisations).

One layer loop (:meth:`GPT.forward`) serves the prompt and every decode step; the cache decides
where keys and values go, which positions a query sees and with which rotary positions:

* :class:`KVCache` (eager): a step attends over the positions written so far (a slice of
  the cache), the fastest on the CPU; finished rows can be dropped (:meth:`KVCache.select`);
* :class:`StaticKVCache`: shapes independent of the step, for ``torch.compile`` — writes by
  ``index_copy_`` at a position *tensor*, attention over the whole cache with a key mask, so
  one compiled graph (and on CUDA one CUDA graph) serves every step.
"""

from __future__ import annotations

import os
from typing import Callable, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..config import GPTConfig, read_gpt_json
from .llama import (
    LayerHook,
    LlamaBody,
    load_layer_by_layer,
    rms_norm,
    rope_inverse_frequencies,
    rope_tables,
)

#: Attention of a prompt: ``(q (B, nh, T, d), k, v (B, n_kv, T, d), mask (B, 1, T, T) bool or
#: None for plain causal, scale, gqa) -> (B, nh, T, d)``.
PromptAttention = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, Optional[torch.Tensor], float, bool], torch.Tensor
]


def causal_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: Optional[torch.Tensor],
    scale: float,
    gqa: bool,
) -> torch.Tensor:
    """Causal self-attention of a prompt (SDPA): ``mask`` (B, 1, T, T) with padding, else None."""
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, enable_gqa=gqa)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=gqa)


class KVCache:
    """Keys and values of every layer for one generation, allocated once (eager steps).

    A forward pass calls :meth:`begin` once, :meth:`update` and :meth:`attend` per layer and
    :meth:`advance` at the end. The first pass is the prompt (``attention_mask`` given); each
    later pass is one decode step (T = 1) that writes position ``length`` and attends over
    positions ``[0, length]``.

    Attributes:
        k, v: (L, B, n_kv, T_max, head_dim).
        key_mask: (B, T_max) bool, True where a position holds a real token.
        positions: (B,) int64, the rotary position of each row's next token.
        cos_table, sin_table: (≥ T_max + 1, head_dim) rotary tables.
        prompt_attention: the kernel of the prompt's attention.
        length: number of positions written so far.
        padded: some prompt positions are padding (decode steps then need the key mask).
    """

    def __init__(
        self,
        k: torch.Tensor,
        v: torch.Tensor,
        key_mask: torch.Tensor,
        positions: torch.Tensor,
        cos_table: torch.Tensor,
        sin_table: torch.Tensor,
        prompt_attention: Optional[PromptAttention] = None,
    ) -> None:
        self.k, self.v = k, v
        self.key_mask = key_mask
        self.positions = positions
        self.cos_table, self.sin_table = cos_table, sin_table
        self.prompt_attention = prompt_attention or causal_attention
        self.length = 0
        self.padded = False
        self._prompt = False

    @property
    def capacity(self) -> int:
        return self.k.shape[3]

    @property
    def batch(self) -> int:
        return self.k.shape[1]

    # ---- one forward pass: begin, (update, attend) per layer, advance ----------------------

    def begin(
        self, t: int, attention_mask: Optional[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """Start a pass over T new positions: cos, sin (B, T, 1, d) and the attention mask.

        ``attention_mask`` (B, T), 1 on real tokens (left padding 0), marks the prompt.
        """
        if attention_mask is not None:
            return self._begin_prompt(t, attention_mask)
        return self._begin_step()

    def _begin_prompt(self, t: int, attention_mask: torch.Tensor):
        mask = attention_mask.bool()
        positions = mask.long().cumsum(-1) - 1
        positions = positions.masked_fill(~mask, 1)
        cos, sin = self.cos_table[positions][:, :, None], self.sin_table[positions][:, :, None]
        self.padded = not bool(mask.all())
        allowed = None
        if self.padded:
            causal = torch.ones(t, t, dtype=torch.bool, device=mask.device).tril()
            allowed = causal[None] & mask[:, None, :]
            # a padded query sees no real key: let it see itself so its row stays finite
            allowed |= torch.eye(t, dtype=torch.bool, device=mask.device)[None]
            allowed = allowed[:, None]
        self.key_mask[:, :t] = mask
        self.key_mask[:, t:] = False
        self.positions.copy_(positions[:, -1] + 1)
        self._prompt = True
        return cos, sin, allowed

    def _begin_step(self):
        end = self.length + 1
        self.key_mask[:, self.length] = True
        cos = self.cos_table[self.positions][:, None, None]  # (B, 1, 1, d)
        sin = self.sin_table[self.positions][:, None, None]
        return cos, sin, (self.key_mask[:, None, None, :end] if self.padded else None)

    def update(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new k, v (B, n_kv, T, d) of ``layer``; returns the keys and values that
        the new queries attend over (the prompt's own, or the cache's positions so far)."""
        if self._prompt:
            t = k.shape[2]
            self.k[layer, :, :, :t] = k
            self.v[layer, :, :, :t] = v
            return k, v
        n = self.length
        self.k[layer, :, :, n] = k[:, :, 0]
        self.v[layer, :, :, n] = v[:, :, 0]
        return self.k[layer, :, :, : n + 1], self.v[layer, :, :, : n + 1]

    def attend(
        self,
        q: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        mask: Optional[torch.Tensor],
        scale: float,
        gqa: bool,
    ) -> torch.Tensor:
        """Attention of q (B, nh, T, d) over ``update``'s keys and values -> (B, nh, T, d)."""
        if self._prompt:
            return self.prompt_attention(q, keys, values, mask, scale, gqa)
        return F.scaled_dot_product_attention(
            q.to(keys.dtype), keys, values, attn_mask=mask, scale=scale, enable_gqa=gqa
        )

    def advance(self, t: int) -> None:
        """End a pass over T positions."""
        if self._prompt:
            self._prompt = False
            self.length = t
        else:
            self.positions.add_(t)
            self.length += t

    def select(self, rows: torch.Tensor) -> KVCache:
        """A cache holding only ``rows`` (batch indices), for dropping finished items.

        Only the positions written so far are copied.
        """
        n = self.length
        k = self.k.new_empty((self.k.shape[0], len(rows), *self.k.shape[2:]))
        v = torch.empty_like(k)
        k[:, :, :, :n] = self.k[:, rows, :, :n]
        v[:, :, :, :n] = self.v[:, rows, :, :n]
        out = KVCache(
            k,
            v,
            self.key_mask[rows],
            self.positions[rows],
            self.cos_table,
            self.sin_table,
            self.prompt_attention,
        )
        out.length, out.padded = n, self.padded
        return out


class StaticKVCache(KVCache):
    """A cache whose decode steps have fixed shapes (what ``compile=True`` compiles).

    Keys and values start zeroed (attention reads positions not yet written, masked). A step
    writes at ``write_pos`` (a (1,) tensor, so that a compiled step does not specialise on the
    step) and attends over all T_max positions with the key mask; it touches no Python state.
    Rows are never dropped and the cache can be reused by a later generation.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.write_pos = torch.zeros(1, dtype=torch.long, device=self.k.device)

    @property
    def tensors(self) -> tuple[torch.Tensor, ...]:
        """The tensors a step reads or writes (CUDA graphs need their addresses fixed)."""
        return (
            self.k,
            self.v,
            self.key_mask,
            self.positions,
            self.write_pos,
            self.cos_table,
            self.sin_table,
        )

    def _begin_step(self):
        self.key_mask.index_fill_(1, self.write_pos, True)
        cos = self.cos_table.index_select(0, self.positions)[:, None, None]
        sin = self.sin_table.index_select(0, self.positions)[:, None, None]
        return cos, sin, self.key_mask[:, None, None, :]

    def update(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self._prompt:
            return super().update(layer, k, v)
        k_layer, v_layer = self.k[layer], self.v[layer]
        k_layer.index_copy_(2, self.write_pos, k)
        v_layer.index_copy_(2, self.write_pos, v)
        return k_layer, v_layer

    def advance(self, t: int) -> None:
        if self._prompt:
            self._prompt = False
            self.length = t
            self.write_pos.fill_(t)
        else:
            self.positions.add_(t)
            self.write_pos.add_(t)

    def select(self, rows: torch.Tensor) -> KVCache:
        raise NotImplementedError("a static cache keeps its rows (its shapes must not change)")


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

    Built by :meth:`from_files` (the layers are loaded, fused and, with a ``layer_hook``,
    quantised before the GPT is returned).

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
        self.gqa = self.num_kv_heads != self.num_heads
        self.body = LlamaBody(config, self.head_dim)
        self._rope: Optional[tuple[torch.Tensor, torch.Tensor]] = None
        self._layers: tuple[_Layer, ...] = ()

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

        Projections are fused as each layer loads. Layers are read from the file one at a
        time into process memory (not a memory map, whose 4 KiB file pages stream more slowly
        than anonymous memory on a bandwidth-bound step); ``layer_hook`` (e.g. int8
        quantisation) runs on each layer right after it is loaded, so the full-precision
        weights of the whole body are never in memory at once. ``device``: where the GPT goes.
        """
        config = read_gpt_json(os.path.join(config_dir, "config.json"))
        with torch.device("meta"):
            model = cls(config)
        model.body.to(dtype=dtype)
        load_layer_by_layer(model.body, weights_path, layer_hook)
        if device is not None:
            model.to(device)
        model._layers = tuple(_Layer.of(layer) for layer in model.body.layers)
        return model.eval().requires_grad_(False)

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
        """An empty cache for ``batch`` rows and ``capacity`` positions.

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
            torch.zeros(batch, capacity, dtype=torch.bool, device=device),
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
            embeds: (B, T, H) input embeddings: the prompt (with ``attention_mask``, into an
                empty cache of capacity ≥ T) or one decode step (T = 1).
            cache: the generation's cache (:meth:`new_cache`).
            attention_mask: (B, T), 1 on real prompt tokens (left padding is 0); None for a
                decode step.

        Returns:
            (B, T, H) hidden states after the final norm.
        """
        t = embeds.shape[1]
        cos, sin, mask = cache.begin(t, attention_mask)
        x = embeds
        for i, layer in enumerate(self._layers):
            q, k, v = self._qkv(layer, x, cos, sin)
            keys, values = cache.update(i, k, v)
            o = cache.attend(q, keys, values, mask, self.scaling, self.gqa)
            x = self._finish(layer, x, o.to(x.dtype))
        cache.advance(t)
        return self.body.norm(x)

    def _qkv(self, layer: _Layer, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """q (B, nh, T, d), k and v (B, n_kv, T, d) of one layer, rotary applied.

        cos, sin: (B, T, 1, d). q and k are rotated together (one set of element-wise ops).
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
