"""KV caches of the GPT: keys and values of every layer, allocated once, one length per row.

A row holds its prompt's real tokens at positions 0 … L−1 (:meth:`chattts.model.gpt.GPT.forward`
right-aligns a padded prompt), so a row's length is both where its next key goes and the
rotary position of its next token. Rows are independent: a row's prompt can be written while
other rows are in the middle of their generation (continuous batching), and each decode step
writes one key per row at that row's own position.

A forward pass calls :meth:`KVCache.begin` once, :meth:`KVCache.update` and
:meth:`KVCache.attend` per layer and :meth:`KVCache.advance` at the end. :meth:`KVCache.rows`
gives a view of some rows that shares the storage: a prompt is written through a view of the
rows it fills, and the decode steps run over a view of the rows in use.

* :class:`KVCache` (eager): a step attends over the positions written so far (a slice of the
  cache; with a key mask when the rows' lengths differ), the fastest on the CPU; a row that
  leaves is replaced by another (:meth:`KVCache.move`);
* :class:`StaticKVCache`: shapes independent of the step, for ``torch.compile`` — every step
  runs over all rows (rows not in use are masked out and do not advance), writes one key per
  row with ``scatter_`` at a position *tensor* and attends over the whole cache with a key
  mask, so one compiled graph (and on CUDA one CUDA graph) serves every step.
"""

from __future__ import annotations

import copy
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

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
    """Causal self-attention of a prompt (SDPA): ``mask`` (B, 1, T, T) if any, else None."""
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, enable_gqa=gqa)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=gqa)


class KVCache:
    """Keys and values of every layer for B rows, each with its own length (eager steps).

    The first pass over a row is its prompt (:meth:`begin` with the rows' lengths); each later
    pass is one decode step (T = 1) of every row of the cache (or of the view it is run on).

    Attributes:
        k, v: (L, B, n_kv, T_max, head_dim).
        lengths: (B,) int64, positions written per row (the rotary position of its next token).
        host_lengths: (B,) int64 NumPy array, the same lengths on the host (read per step
            without a device synchronisation).
        host_filled: (B,) int64 NumPy array: positions [0, filled) of each row hold finite
            values (written, or zeroed). The cache is allocated uninitialised; a step whose rows
            differ in length attends over positions a shorter row has not written (masked, but
            a masked NaN would still poison the weighted sum), so those are zeroed first.
        cos_table, sin_table: (≥ T_max + 1, head_dim) rotary tables.
        prompt_attention: the kernel of the prompt's attention.
    """

    def __init__(
        self,
        k: torch.Tensor,
        v: torch.Tensor,
        lengths: torch.Tensor,
        cos_table: torch.Tensor,
        sin_table: torch.Tensor,
        prompt_attention: Optional[PromptAttention] = None,
    ) -> None:
        self.k, self.v = k, v
        self.lengths = lengths
        self.host_lengths = np.zeros(k.shape[1], dtype=np.int64)
        self.host_filled = np.zeros(k.shape[1], dtype=np.int64)
        self.cos_table, self.sin_table = cos_table, sin_table
        self.prompt_attention = prompt_attention or causal_attention
        self._prompt = False
        self._span = 0  # decode: positions the step attends over
        self._write: Optional[int] = None  # decode: the write position shared by every row
        self._index: Optional[torch.Tensor] = None  # decode: per-row write positions

    @property
    def capacity(self) -> int:
        return self.k.shape[3]

    @property
    def batch(self) -> int:
        return self.k.shape[1]

    def rows(self, start: int, stop: int) -> KVCache:
        """A cache of the rows [start, stop) that shares this cache's storage."""
        view = copy.copy(self)
        view.k, view.v = self.k[:, start:stop], self.v[:, start:stop]
        view.lengths = self.lengths[start:stop]
        view.host_lengths = self.host_lengths[start:stop]
        view.host_filled = self.host_filled[start:stop]
        view._prompt = False
        return view

    # ---- one forward pass: begin, (update, attend) per layer, advance ----------------------

    def begin(
        self, t: int, lengths: Optional[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """Start a pass over T new positions: cos, sin (B or 1, T, 1, d) and the attention mask.

        ``lengths`` (B,): the real tokens of each row's right-padded prompt (the prompt pass,
        which fills positions [0, T) of every row); None for a decode step.
        """
        if lengths is not None:
            return self._begin_prompt(t, lengths)
        return self._begin_step()

    def _begin_prompt(self, t: int, lengths: torch.Tensor):
        if t > self.capacity:
            raise ValueError(f"a prompt of {t} positions in a cache of {self.capacity}")
        self.lengths.copy_(lengths)
        self.host_lengths[:] = lengths.tolist()
        np.maximum(self.host_filled, t, out=self.host_filled)
        self._prompt = True
        # right-padded rows: positions 0 … T−1 and plain causal attention (a real token
        # never sees the padding after it; padded positions are never attended later)
        return self.cos_table[None, :t, None], self.sin_table[None, :t, None], None

    def _begin_step(self):
        lo, hi = int(self.host_lengths.min()), int(self.host_lengths.max())
        if hi >= self.capacity:
            raise ValueError(f"the cache is full ({self.capacity} positions)")
        cos = self.cos_table[self.lengths][:, None, None]  # (B, 1, 1, d)
        sin = self.sin_table[self.lengths][:, None, None]
        self._span = hi + 1
        if lo == hi:  # one write position, nothing to mask
            self._write, self._index = hi, None
            return cos, sin, None
        self._zero_unwritten(self._span)
        _, b, n_kv, _, d = self.k.shape
        self._write = None
        self._index = self.lengths.view(b, 1, 1, 1).expand(b, n_kv, 1, d)
        positions = torch.arange(self._span, device=self.lengths.device)
        mask = positions[None] <= self.lengths[:, None]
        return cos, sin, mask[:, None, None]

    def _zero_unwritten(self, span: int) -> None:
        """Zero positions [filled, span) of the rows that have not written them (one write
        per group of rows with the same ``filled``; usually one column of the shorter rows)."""
        filled = self.host_filled
        stale = np.flatnonzero(filled < span)
        for start in np.unique(filled[stale]).tolist():
            rows = stale[filled[stale] == start].tolist()
            index = rows[0] if len(rows) == 1 else torch.tensor(rows, device=self.k.device)
            self.k[:, index, :, start:span] = 0
            self.v[:, index, :, start:span] = 0
        filled[stale] = span

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
        k_layer, v_layer = self.k[layer], self.v[layer]
        if self._write is not None:
            k_layer[:, :, self._write] = k[:, :, 0]
            v_layer[:, :, self._write] = v[:, :, 0]
        else:
            k_layer.scatter_(2, self._index, k.to(k_layer.dtype))
            v_layer.scatter_(2, self._index, v.to(v_layer.dtype))
        return k_layer[:, :, : self._span], v_layer[:, :, : self._span]

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
        else:
            self.lengths.add_(t)
            self.host_lengths += t
            np.maximum(self.host_filled, self.host_lengths, out=self.host_filled)

    def move(self, src: int, dst: int) -> None:
        """Row ``dst`` takes row ``src``'s keys, values and length (only the positions written
        are copied); ``src`` is free afterwards."""
        n = int(self.host_lengths[src])
        self.k[:, dst, :, :n] = self.k[:, src, :, :n]
        self.v[:, dst, :, :n] = self.v[:, src, :, :n]
        self.lengths[dst] = self.lengths[src]
        self.host_lengths[dst] = n
        self.host_filled[dst] = max(n, int(self.host_filled[dst]))  # its own old values beyond


class StaticKVCache(KVCache):
    """A cache whose decode steps have fixed shapes (what ``compile=True`` compiles).

    Keys and values start zeroed (attention reads positions not yet written, masked). A step
    runs over every row: rows in use (``live``) write their key at their own length (a
    ``scatter_`` at a position *tensor*, so a compiled step does not specialise on the step)
    and advance; free rows write at position 0, which nothing reads, and stay. Every step
    attends over all T_max positions with a key mask and touches no Python state. Rows never
    move, and the cache can be reused by a later generation (:meth:`reset`).

    Attributes:
        live: (B,) int64, 1 on rows in use.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.host_filled[:] = self.capacity  # zeroed when made, finite ever after
        self.live = torch.zeros(self.batch, dtype=torch.long, device=self.k.device)
        self._positions = torch.arange(self.capacity, device=self.k.device)

    @property
    def tensors(self) -> tuple[torch.Tensor, ...]:
        """The tensors a step reads or writes (CUDA graphs need their addresses fixed)."""
        return (
            self.k,
            self.v,
            self.lengths,
            self.live,
            self._positions,
            self.cos_table,
            self.sin_table,
        )

    def rows(self, start: int, stop: int) -> KVCache:
        view = super().rows(start, stop)
        assert isinstance(view, StaticKVCache)
        view.live = self.live[start:stop]
        return view

    def _begin_prompt(self, t: int, lengths: torch.Tensor):
        out = super()._begin_prompt(t, lengths)
        self.live.fill_(1)
        return out

    def _begin_step(self):
        pos = self.lengths
        cos = self.cos_table.index_select(0, pos)[:, None, None]
        sin = self.sin_table.index_select(0, pos)[:, None, None]
        _, b, n_kv, _, d = self.k.shape
        self._index = (pos * self.live).view(b, 1, 1, 1).expand(b, n_kv, 1, d)
        mask = self._positions[None] <= pos[:, None]
        return cos, sin, mask[:, None, None]

    def update(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self._prompt:
            return super().update(layer, k, v)
        k_layer, v_layer = self.k[layer], self.v[layer]
        k_layer.scatter_(2, self._index, k.to(k_layer.dtype))
        v_layer.scatter_(2, self._index, v.to(v_layer.dtype))
        return k_layer, v_layer

    def advance(self, t: int) -> None:
        if self._prompt:
            self._prompt = False
        else:
            self.lengths.add_(self.live, alpha=t)

    def release(self, row: int) -> None:
        """Row ``row`` is no longer in use."""
        self.live[row] = 0
        self.lengths[row] = 0
        self.host_lengths[row] = 0

    def reset(self) -> None:
        """Every row free (a reused cache: stale keys stay, masked, until overwritten)."""
        self.live.zero_()
        self.lengths.zero_()
        self.host_lengths[:] = 0
        self.host_filled[:] = self.capacity  # zeroed when made, finite ever after

    def move(self, src: int, dst: int) -> None:
        raise NotImplementedError("a static cache keeps its rows in place (fixed shapes)")
