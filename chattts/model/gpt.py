"""The GPT body: a transformers ``LlamaModel`` run over a static KV cache (REFERENCE.md §4).

The weights live in a ``LlamaModel`` (so transformers reads both config formats and any later
quantisation of its linear layers applies); the forward pass over its layers is our own, so the
KV cache is allocated once per generation and a decode step writes one position in place.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from transformers import LlamaConfig, LlamaModel
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from ..errors import WeightsError
from .loading import load_strict, read_safetensors


@dataclass
class KVCache:
    """Keys and values of every layer for a whole generation, allocated once.

    Attributes:
        k, v: (L, B, n_kv, T_max, head_dim).
        key_mask: (B, T_max) bool, True where a position holds a real token.
        positions: (B,) int64, the rotary position of each row's next token.
        length: number of positions written so far.
    """

    k: torch.Tensor
    v: torch.Tensor
    key_mask: torch.Tensor
    positions: torch.Tensor
    length: int = 0

    @property
    def capacity(self) -> int:
        return self.k.shape[3]

    def select(self, rows: torch.Tensor) -> KVCache:
        """A cache holding only ``rows`` (batch indices), for dropping finished items."""
        return KVCache(
            self.k[:, rows], self.v[:, rows], self.key_mask[rows], self.positions[rows], self.length
        )


def _read_llama_config(config_dir: str) -> LlamaConfig:
    path = os.path.join(config_dir, "config.json")
    try:
        cfg = LlamaConfig.from_pretrained(config_dir)
    except (OSError, ValueError, json.JSONDecodeError) as e:
        raise WeightsError(f"{path}: cannot read the LLaMA configuration ({e})") from e
    return cfg


class GPT(nn.Module):
    """The LLaMA body fed ``inputs_embeds``; hidden states after the final RMSNorm.

    Args:
        config: a transformers ``LlamaConfig``; its token embedding is never used, so it is
            built with a vocabulary of one.
    """

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        config = copy.deepcopy(config)
        config.vocab_size = 1
        config.pad_token_id = None
        config.use_cache = False
        self.config = config
        self.body = LlamaModel(config)
        self.num_layers = config.num_hidden_layers
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.num_heads
        self.hidden_size = config.hidden_size
        self.scaling = self.head_dim**-0.5
        self._rope_cos: Optional[torch.Tensor] = None
        self._rope_sin: Optional[torch.Tensor] = None

    @classmethod
    def from_files(
        cls, config_dir: str, weights_path: str, dtype: torch.dtype = torch.float32
    ) -> GPT:
        """Build from ``asset/gpt`` and load its safetensors strictly.

        The file may carry ``embed_tokens.weight`` and a ``model.`` prefix; both are ignored.
        """
        config = _read_llama_config(config_dir)
        with torch.device("meta"):
            model = cls(config)
        state = read_safetensors(weights_path)
        state = {(k[6:] if k.startswith("model.") else k): v for k, v in state.items()}
        body = model.body
        body.embed_tokens = None  # never used: the body is fed inputs_embeds
        body.to(dtype=dtype)
        load_strict(body, state, weights_path, ignore=("embed_tokens.weight",))
        body.rotary_emb = type(body.rotary_emb)(config=body.config)
        return model.eval()

    # ---- rotary tables ----------------------------------------------------------------------

    def _rope(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        """cos, sin of shape (B, T, head_dim) for positions (B, T), from a cached table."""
        need = int(positions.max()) + 1 if positions.numel() else 1
        if (
            self._rope_cos is None
            or self._rope_cos.shape[0] < need
            or (self._rope_cos.device != positions.device)
        ):
            size = max(
                need,
                2 * (self._rope_cos.shape[0] if self._rope_cos is not None else 0),
                self.config.max_position_embeddings,
            )
            pos = torch.arange(size, device=positions.device)[None]
            probe = torch.empty(0, device=positions.device)
            cos, sin = self.body.rotary_emb(probe, pos)
            self._rope_cos, self._rope_sin = cos[0], sin[0]
        return self._rope_cos[positions].to(dtype), self._rope_sin[positions].to(dtype)

    # ---- cache -----------------------------------------------------------------------------

    def new_cache(self, batch: int, capacity: int, device: torch.device) -> KVCache:
        """An empty cache for ``batch`` rows and ``capacity`` positions."""
        dtype = self.body.norm.weight.dtype
        shape = (self.num_layers, batch, self.num_kv_heads, capacity, self.head_dim)
        return KVCache(
            k=torch.zeros(shape, dtype=dtype, device=device),
            v=torch.zeros(shape, dtype=dtype, device=device),
            key_mask=torch.zeros(batch, capacity, dtype=torch.bool, device=device),
            positions=torch.zeros(batch, dtype=torch.long, device=device),
        )

    # ---- forward ---------------------------------------------------------------------------

    def _layers(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: KVCache,
        start: int,
        attn_mask: torch.Tensor,
        static: bool,
    ) -> torch.Tensor:
        b, t, _ = x.shape
        end = cache.capacity if static else start + t
        gqa = self.num_kv_heads != self.num_heads
        for i, layer in enumerate(self.body.layers):
            attn = layer.self_attn
            h = layer.input_layernorm(x)
            q = attn.q_proj(h).view(b, t, -1, self.head_dim).transpose(1, 2)
            k = attn.k_proj(h).view(b, t, -1, self.head_dim).transpose(1, 2)
            v = attn.v_proj(h).view(b, t, -1, self.head_dim).transpose(1, 2)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            cache.k[i, :, :, start : start + t] = k
            cache.v[i, :, :, start : start + t] = v
            o = F.scaled_dot_product_attention(
                q,
                cache.k[i, :, :, :end],
                cache.v[i, :, :, :end],
                attn_mask=attn_mask,
                scale=self.scaling,
                enable_gqa=gqa,
            )
            x = x + attn.o_proj(o.transpose(1, 2).reshape(b, t, -1))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return self.body.norm(x)

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
        cos, sin = self._rope(positions, embeds.dtype)
        causal = torch.ones(t, t, dtype=torch.bool, device=embeds.device).tril()
        allowed = causal[None] & mask[:, None, :]
        # a padded query sees no real key: let it see itself so its row stays finite
        allowed |= torch.eye(t, dtype=torch.bool, device=embeds.device)[None]
        cache.key_mask[:, :t] = mask
        cache.positions.copy_(positions[:, -1] + 1)
        out = self._layers(embeds, cos, sin, cache, 0, allowed[:, None], static=False)
        cache.length = t
        return out

    def decode(self, embeds: torch.Tensor, cache: KVCache, static: bool = False) -> torch.Tensor:
        """One step: (B, 1, H) embeddings of the new tokens -> (B, 1, H) hidden states.

        With ``static`` the attention spans the whole cache (fixed shapes, for compiled graphs).
        """
        start = cache.length
        cache.key_mask[:, start] = True
        positions = cache.positions[:, None]
        cos, sin = self._rope(positions, embeds.dtype)
        end = cache.capacity if static else start + 1
        mask = cache.key_mask[:, None, None, :end]
        out = self._layers(embeds, cos, sin, cache, start, mask, static=static)
        cache.positions += 1
        cache.length = start + 1
        return out
