"""The GPT backend seam: what the generation loop needs from the GPT, and its torch version.

A :class:`GPTBackend` opens one :class:`GPTSession` per generation: the session owns the
generation's cache (sized once for its rows), writes prompts into free rows (while other rows
are in the middle of their generation), runs the decode steps of every row and lets finished
rows go (continuous batching, :mod:`chattts.generation.run`).
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
    """The GPT's state for one generation: up to ``max_rows`` rows, each with its own length.

    Rows are numbered 0 … rows − 1 in the order they were prefilled; when a row leaves
    (:meth:`remove`) the last row takes its number.

    Attributes:
        rows: rows in the session.
    """

    rows: int

    def prefill(self, embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """New rows after the current ones: embeds (k, T, H), attention_mask (k, T) with 1 on
        real tokens (any padding) -> (k, H) final-normed hidden state of each row's last real
        token. The rows' positions are 0 … L − 1, whatever the padding."""
        ...

    def decode(self, embeds: torch.Tensor) -> torch.Tensor:
        """One step of every row: embeds (rows, 1, H) of the drawn tokens -> (rows, H)."""
        ...

    def remove(self, row: int) -> None:
        """Row ``row`` leaves; the last row takes its number."""
        ...

    def close(self) -> None:
        """The generation is over (its cache may be reused)."""
        ...


class GPTBackend(Protocol):
    """Runs the GPT for the engine.

    Attributes:
        name: the backend's name (``EngineOptions.backend``).
        dtype: the compute dtype its inputs are given in.
        fixed_shapes: decode steps have fixed shapes (every row of the cache is computed).
        torch_threads: torch's thread count during a generation step (the engine's own work
            between the GPT's runs: embeddings, heads, sampling), applied through
            :func:`chattts.runtime.gpt_threads`; None: as configured.
    """

    name: str
    dtype: torch.dtype
    fixed_shapes: bool
    torch_threads: Optional[int]

    def open(self, batch: int, positions: int) -> GPTSession:
        """A session for up to ``batch`` rows of up to ``positions`` positions each."""
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


def _last_real(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B,) index of each row's last real token in a (B, T) mask."""
    t = attention_mask.shape[1]
    ranks = torch.arange(1, t + 1, device=attention_mask.device)
    return (attention_mask.bool().long() * ranks).argmax(-1)


class TorchSession:
    """One generation on :class:`TorchBackend`: a GPT and its cache, rows kept in front.

    A prompt is written through a view of the rows it fills; decode steps run over a view of
    the rows in use; a row that leaves is overwritten by the last one
    (:meth:`chattts.model.gpt.KVCache.move`), so the step never computes a finished row.
    """

    def __init__(self, backend: TorchBackend, cache: KVCache) -> None:
        self.cache = cache
        self.rows = 0
        self._backend = backend
        self._gpt = backend.gpt
        self._step = backend.step
        self._view: Optional[KVCache] = None

    def prefill(self, embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        k = embeds.shape[0]
        if self.rows + k > self.cache.batch:
            raise ValueError(f"{self.rows} + {k} rows in a session of {self.cache.batch}")
        view = self.cache.rows(self.rows, self.rows + k)
        out = self._gpt(embeds, view, attention_mask)
        self.rows += k
        self._view = None
        return out[torch.arange(k, device=out.device), _last_real(attention_mask)]

    def decode(self, embeds: torch.Tensor) -> torch.Tensor:
        if embeds.shape[0] != self.rows:
            raise ValueError(f"{embeds.shape[0]} inputs for {self.rows} rows")
        view = self._view
        if view is None:
            whole = self.rows == self.cache.batch
            view = self._view = self.cache if whole else self.cache.rows(0, self.rows)
        return self._step(embeds, view)[:, -1]

    def remove(self, row: int) -> None:
        last = self.rows - 1
        if not 0 <= row <= last:
            raise IndexError(f"row {row} of {self.rows}")
        if row != last:
            self.cache.move(last, row)
        self.rows = last
        self._view = None

    def close(self) -> None:
        self._backend.give_back(self.cache)


class StaticTorchSession:
    """One generation on the fixed-shape step: every step runs over all rows of a
    :class:`StaticKVCache`, whose rows never move.

    Session rows map to cache rows (slots); a row that leaves frees its slot (masked, not
    computed into anything) and a later prompt takes the lowest free slots. While the rows in
    use are exactly the cache's rows in order (a static batch), the step runs on the inputs
    as they are; otherwise they are scattered into a full batch and the outputs gathered.
    """

    def __init__(self, backend: TorchBackend, cache: StaticKVCache) -> None:
        cache.reset()
        self.cache = cache
        self.rows = 0
        self._backend = backend
        self._gpt = backend.gpt
        self._step = backend.step
        self._slots: list[int] = []  # session row -> cache row
        self._index: Optional[torch.Tensor] = None  # the slots as a tensor (None: identity)
        self._full: Optional[torch.Tensor] = None  # (B, 1, H) inputs of every cache row

    def prefill(self, embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        k, batch = embeds.shape[0], self.cache.batch
        free = sorted(set(range(batch)) - set(self._slots))
        if k > len(free):
            raise ValueError(f"{self.rows} + {k} rows in a session of {batch}")
        take = free[:k]
        last = _last_real(attention_mask)
        if take == list(range(take[0], take[0] + k)):  # contiguous: one forward
            runs = [(take[0], slice(0, k))]
        else:
            runs = [(slot, slice(j, j + 1)) for j, slot in enumerate(take)]
        out = []
        for slot, part in runs:
            n = part.stop - part.start
            h = self._gpt(embeds[part], self.cache.rows(slot, slot + n), attention_mask[part])
            out.append(h[torch.arange(n, device=h.device), last[part]])
        self._slots += take
        self.rows += k
        self._update_index()
        return torch.cat(out)

    def _update_index(self) -> None:
        identity = self._slots == list(range(self.cache.batch))
        self._index = None if identity else torch.tensor(self._slots, device=self.cache.k.device)

    def decode(self, embeds: torch.Tensor) -> torch.Tensor:
        if embeds.shape[0] != self.rows:
            raise ValueError(f"{embeds.shape[0]} inputs for {self.rows} rows")
        if self._index is None:
            return self._step(embeds, self.cache)[:, -1]
        if self._full is None or self._full.dtype != embeds.dtype:
            shape = (self.cache.batch, 1, embeds.shape[-1])
            self._full = torch.zeros(shape, dtype=embeds.dtype, device=embeds.device)
        self._full[self._index] = embeds
        return self._step(self._full, self.cache)[self._index, -1]

    def remove(self, row: int) -> None:
        if not 0 <= row < self.rows:
            raise IndexError(f"row {row} of {self.rows}")
        self.cache.release(self._slots[row])
        last = self._slots.pop()
        if row < len(self._slots):
            self._slots[row] = last
        self.rows -= 1
        self._update_index()

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
    #: torch runs the GPT itself: its thread count is left as configured
    torch_threads: Optional[int] = None

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

    def open(self, batch: int, positions: int) -> GPTSession:
        cache = self._take_cache(batch, positions)
        if isinstance(cache, StaticKVCache):
            return StaticTorchSession(self, cache)
        return TorchSession(self, cache)

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
