"""The GPT body: a transformers ``LlamaModel`` run over a static KV cache (REFERENCE.md §4).

The weights live in a ``LlamaModel`` (so transformers reads both config formats); the forward
pass over its layers is our own, so the KV cache is allocated once per generation and a decode
step writes one position in place. After loading, each layer's q/k/v projections are fused
into one linear layer and its gate/up projections into another (fewer, larger matrix products
per step; with int8 weights, fewer activation quantisations).

Two decode steps exist:

* :meth:`GPT.decode` (eager): attention over the positions written so far (a slice of the
  cache), the fastest on the CPU;
* :meth:`GPT.decode_static`: fixed shapes for ``torch.compile`` — attention over the whole
  cache with a key mask, cache writes by ``index_copy_`` at a position *tensor*, so one compiled
  graph (and on CUDA one CUDA graph) serves every step.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn
from transformers import LlamaConfig, LlamaModel

from ..errors import WeightsError
from .loading import load_strict


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


def fuse_layer(layer: nn.Module) -> None:
    """Replace a ``LlamaDecoderLayer``'s q/k/v by ``qkv_proj`` and gate/up by ``gate_up_proj``.

    The separate layers are deleted, so only one copy of the weights stays alive.
    """
    attn, mlp = layer.self_attn, layer.mlp
    if not hasattr(attn, "qkv_proj"):
        attn.qkv_proj = _fuse_linear([attn.q_proj, attn.k_proj, attn.v_proj])
        del attn.q_proj, attn.k_proj, attn.v_proj
    if not hasattr(mlp, "gate_up_proj"):
        mlp.gate_up_proj = _fuse_linear([mlp.gate_proj, mlp.up_proj])
        del mlp.gate_proj, mlp.up_proj


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of x (B, T, heads, d) with cos, sin (B, T, 1, d)."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """LLaMA's RMSNorm (computed in float32, as transformers does), one fused op."""
    if x.dtype == torch.float32:
        return F.rms_norm(x, (x.shape[-1],), weight, eps)
    return weight * F.rms_norm(x.float(), (x.shape[-1],), None, eps).to(x.dtype)


def _read_llama_config(config_dir: str) -> LlamaConfig:
    path = os.path.join(config_dir, "config.json")
    try:
        cfg = LlamaConfig.from_pretrained(config_dir)
    except (OSError, ValueError, json.JSONDecodeError) as e:
        raise WeightsError(f"{path}: cannot read the LLaMA configuration ({e})") from e
    return cfg


#: A function applied to each layer right after its weights are loaded (and fused).
LayerHook = Callable[[nn.Module], None]


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
        """Build from ``asset/gpt`` and load its safetensors strictly, fusing projections.

        The file may carry ``embed_tokens.weight`` and a ``model.`` prefix; both are ignored.
        Layers are read from the file one at a time into process memory (not a memory map,
        whose 4 KiB file pages stream more slowly than anonymous memory on a bandwidth-bound
        step); ``layer_hook`` (e.g. int8 quantisation) runs on each layer right after it is
        loaded, so the full-precision weights of the whole body are never in memory at once.
        """
        config = _read_llama_config(config_dir)
        with torch.device("meta"):
            model = cls(config)
        body = model.body
        body.embed_tokens = None  # never used: the body is fed inputs_embeds
        body.to(dtype=dtype)
        _load_layer_by_layer(body, weights_path, layer_hook)
        body.rotary_emb = type(body.rotary_emb)(config=body.config)
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
            pos = torch.arange(n, device=device)[None]
            probe = torch.empty(0, device=device)
            c, s = self.body.rotary_emb(probe, pos)
            self._rope_cos, self._rope_sin = c[0].to(self.dtype), s[0].to(self.dtype)
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
        qkv = blk.qkv(_rms_norm(x, blk.ln1, blk.ln1_eps)).view(b, t, nq + 2 * nkv, d)
        qk = _rotate(qkv[:, :, : nq + nkv], cos, sin).transpose(1, 2)
        return qk[:, :nq], qk[:, nq:], qkv[:, :, nq + nkv :].transpose(1, 2)

    def _finish(self, blk: _Block, x: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        """Output projection, residual, MLP and residual of one layer; o (B, nh, T, d)."""
        b, _, t, _ = o.shape
        x = x + blk.o(o.transpose(1, 2).reshape(b, t, -1))
        gate, up = blk.gate_up(_rms_norm(x, blk.ln2, blk.ln2_eps)).chunk(2, dim=-1)
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


def _load_layer_by_layer(body: LlamaModel, path: str, hook: Optional[LayerHook]) -> None:
    """Strictly load ``body`` from ``path`` one layer at a time, running ``hook`` on each.

    Tensors are read with ``pread`` (not a memory map), so a layer's full-precision weights
    leave memory once the hook has replaced them.
    """
    from safetensors import safe_open

    if not os.path.isfile(path):
        from ..errors import AssetNotFoundError

        raise AssetNotFoundError(f"model file not found: {path}")
    try:
        handle = safe_open(path, framework="pt", device="cpu", backend="pread")
    except Exception as e:  # safetensors raises several error types for bad files
        raise WeightsError(f"{path}: not a readable safetensors file ({e})") from e
    with handle as f:
        names = {(k[6:] if k.startswith("model.") else k): k for k in f.keys()}
        names.pop("embed_tokens.weight", None)
        own = {"layers." + k for k in _names(body.layers)} | {
            "norm." + k for k in _names(body.norm)
        }
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

        load_strict(body.norm, part("norm."), path)
        for i, layer in enumerate(body.layers):
            load_strict(layer, part(f"layers.{i}."), path)
            fuse_layer(layer)
            if hook is not None:
                hook(layer)


def _names(module: nn.Module) -> list[str]:
    return list(module.state_dict().keys())
