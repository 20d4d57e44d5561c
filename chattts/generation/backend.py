"""The GPT backend seam: what the generation loop needs from the GPT, and its torch version.

A :class:`GPTBackend` opens one :class:`GPTSession` per generation: the session owns the
generation's cache, runs the prompt and the decode steps, and drops finished rows.
:class:`TorchBackend` runs :class:`chattts.model.gpt.GPT` over its KV caches; its speed
options (cache dtype, fixed-shape and compiled step, prompt attention kernel) are given to its
constructor by :func:`chattts.generation.build.build_engine` (docs/engine.md).
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, Optional, Protocol

import torch
import torch.nn.functional as F

from ..model.gpt import GPT, KVCache, PromptAttention, StaticKVCache

logger = logging.getLogger("chattts")

#: Cache capacity granularity of the fixed-shape step: one compiled graph per bucket.
STATIC_BUCKET = 256


class GPTSession(Protocol):
    """The GPT's state for one generation."""

    def prefill(self, embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """embeds (B, T, H), attention_mask (B, T) -> (B, H) final-normed hidden state of
        each row's last position."""
        ...

    def decode(self, embeds: torch.Tensor) -> torch.Tensor:
        """One step: embeds (B, 1, H) of the drawn tokens -> (B, H) hidden states."""
        ...

    def select(self, rows: torch.Tensor) -> None:
        """Keep only ``rows`` (indices into the current batch); not with ``fixed_shapes``."""
        ...

    def close(self) -> None:
        """The generation is over (its cache may be reused)."""
        ...


class GPTBackend(Protocol):
    """Runs the GPT for the engine.

    Attributes:
        name: the backend's name (``EngineOptions.backend``).
        dtype: the compute dtype its inputs are given in.
        fixed_shapes: batches keep their rows to the end (finished rows are still fed).
    """

    name: str
    dtype: torch.dtype
    fixed_shapes: bool

    def open(self, batch: int, positions: int) -> GPTSession:
        """A session for ``batch`` rows and up to ``positions`` positions (prompt included)."""
        ...


def flash_prompt_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: Optional[torch.Tensor],
    scale: float,
    gqa: bool,
) -> torch.Tensor:
    """FlashAttention-2 for an unpadded prompt, SDPA (flash / efficient kernels) otherwise.

    q (B, nh, T, d), k, v (B, n_kv, T, d) -> (B, nh, T, d).
    """
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


class TorchSession:
    """One generation on :class:`TorchBackend`: a GPT and its cache."""

    def __init__(self, backend: TorchBackend, cache: KVCache) -> None:
        self.cache = cache
        self._backend = backend
        self._gpt = backend.gpt
        self._step = backend.step

    def prefill(self, embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self._gpt(embeds, self.cache, attention_mask)[:, -1]

    def decode(self, embeds: torch.Tensor) -> torch.Tensor:
        return self._step(embeds, self.cache)[:, -1]

    def select(self, rows: torch.Tensor) -> None:
        self.cache = self.cache.select(rows)

    def close(self) -> None:
        self._backend.give_back(self.cache)


class TorchBackend:
    """The GPT in torch, with its options fixed at construction.

    Args:
        gpt: the loaded (possibly int8) GPT.
        device: where caches are made.
        cache_dtype: dtype of keys and values (None: the compute dtype).
        fixed_shapes: run decode steps over a :class:`StaticKVCache` (caches sized in buckets of
            :data:`STATIC_BUCKET` positions and reused between generations).
        compile: compile the fixed-shape step with ``torch.compile`` (implies ``fixed_shapes``;
            on CUDA with ``mode="reduce-overhead"``, i.e. CUDA graphs, the cache tensors
            marked as static addresses).
        prompt_attention: the prompt's attention kernel (None: SDPA).
    """

    name = "torch"

    def __init__(
        self,
        gpt: GPT,
        device: torch.device,
        *,
        cache_dtype: Optional[torch.dtype] = None,
        fixed_shapes: bool = False,
        compile: bool = False,
        prompt_attention: Optional[PromptAttention] = None,
    ) -> None:
        self.gpt = gpt
        self.device = torch.device(device)
        self.dtype = gpt.dtype
        self.cache_dtype = cache_dtype
        self.fixed_shapes = fixed_shapes or compile
        self.prompt_attention = prompt_attention
        self._pool: dict[tuple[int, int], list[KVCache]] = {}
        self._pool_lock = threading.Lock()
        self._cuda_graphs = compile and self.device.type == "cuda"
        #: the decode step, ``(embeds (B, 1, H), cache) -> (B, 1, H)``: GPT.forward itself
        #: (a step skips ``nn.Module.__call__``; no hooks are used) or its compiled graph
        self.step: Callable[[torch.Tensor, KVCache], torch.Tensor] = gpt.forward
        if compile:
            mode = "reduce-overhead" if self._cuda_graphs else None
            self.step = torch.compile(gpt, mode=mode, dynamic=False, fullgraph=True)
            logger.info("decode step compiled (%s)", mode or "default")

    def open(self, batch: int, positions: int) -> TorchSession:
        return TorchSession(self, self._take_cache(batch, positions))

    def _take_cache(self, batch: int, needed: int) -> KVCache:
        """A cache for ``needed`` positions: fresh (eager), or bucketed and reused (static)."""
        if not self.fixed_shapes:
            return self.gpt.new_cache(
                batch,
                needed,
                self.device,
                dtype=self.cache_dtype,
                prompt_attention=self.prompt_attention,
            )
        capacity = -(-needed // STATIC_BUCKET) * STATIC_BUCKET
        with self._pool_lock:
            pool = self._pool.get((batch, capacity))
            if pool:
                return pool.pop()
        cache = self.gpt.new_cache(
            batch,
            capacity,
            self.device,
            dtype=self.cache_dtype,
            static=True,
            prompt_attention=self.prompt_attention,
        )
        if self._cuda_graphs and isinstance(cache, StaticKVCache):
            # CUDA graphs replay at fixed addresses
            for t in cache.tensors:
                torch._dynamo.mark_static_address(t)
        return cache

    def give_back(self, cache: KVCache) -> None:
        """Keep a finished generation's cache for the next one (fixed shapes only)."""
        if self.fixed_shapes:
            with self._pool_lock:
                self._pool.setdefault((cache.batch, cache.capacity), []).append(cache)

    def clear_caches(self) -> None:
        """Free the caches kept for reuse."""
        with self._pool_lock:
            self._pool.clear()
