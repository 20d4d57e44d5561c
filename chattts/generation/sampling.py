"""Sampling rules of one generation step as tensor operations (REFERENCE.md §5, steps 3–7).

Every rule works per row, so items with different parameters (and seeds), and items that
joined at different steps, share one batch:
temperature, repetition penalty over the last 16 generated tokens, top-P then top-K (each
keeping at least 3 tokens, as transformers' warpers do), EOS masked before ``min_new_token``,
softmax and one multinomial draw per row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Optional, Union

import numpy as np
import torch

#: Generated tokens the repetition penalty looks back on.
PENALTY_WINDOW = 16
#: Tokens top-P and top-K always keep.
MIN_TOKENS_TO_KEEP = 3


@dataclass
class ItemSampling:
    """Sampling parameters of one batch item.

    ``temperature`` may give one value per output head (codebook). ``seed`` (per item) re-seeds
    a generator before every draw of this item's rows, so an item gives the same tokens
    whatever it is batched with; without it the rows draw from the batch's generator.
    """

    temperature: Union[float, list[float]] = 0.3
    top_p: Optional[float] = 0.7
    top_k: Optional[int] = 20
    repetition_penalty: float = 1.0
    min_new_token: int = 0
    max_new_token: int = 2048
    seed: Optional[int] = None


class _Flags(NamedTuple):
    """Which rules the first n rows need (computed when the rows change)."""

    n: int
    penalty: bool
    top_p: bool
    top_k_max: int  # 0: no row has top-K
    early: bool
    seeds: tuple[Optional[int], ...]


class RowSampler:
    """The sampling state of up to ``max_rows`` batch rows (items); N = rows · heads.

    Row r owns the logits rows [r · heads, (r + 1) · heads): its parameters (as (N, 1)
    tensors), its step count, the window of its last :data:`PENALTY_WINDOW` tokens (the
    repetition penalty) and its seed. A row is set with :meth:`set` when an item joins and
    copied with :meth:`move` when another leaves; :meth:`process`, :meth:`draw` and
    :meth:`record` work on the first n rows (n from the logits' shape). So rows that joined
    at different steps share one batch, each with its own step count.

    Args:
        heads: logits rows per item (1 for the refine pass, num_vq for the code pass).
        vocab: size of each row's vocabulary.
        eos_id: the EOS token of a row.
        device: where logits live.
        max_rows: the most items at once.
        batch_seed: the reference's ``manual_seed``: one generator for the whole batch,
            re-seeded before every step's draw.
    """

    def __init__(
        self,
        heads: int,
        vocab: int,
        eos_id: int,
        device: torch.device,
        max_rows: int,
        batch_seed: Optional[int] = None,
    ) -> None:
        self.heads = heads
        self.vocab = vocab
        self.eos_id = eos_id
        self.device = device
        self.batch_seed = batch_seed
        n = max_rows * heads
        self.temperature = torch.ones(n, 1, device=device)
        self.penalty = torch.ones(n, 1, device=device)
        # compared as in transformers: cumulative probability <= 1 - top_p is removed
        self.top_p_threshold = torch.full((n, 1), -1.0, device=device)
        self.top_k = torch.full((n, 1), vocab - 1, dtype=torch.long, device=device)
        self.min_new = torch.zeros(n, dtype=torch.long, device=device)
        #: tokens drawn so far by each logits row's item
        self.steps = torch.zeros(n, dtype=torch.long, device=device)
        #: the last PENALTY_WINDOW tokens of each logits row; step s is in column s % window
        self.window = torch.zeros(n, PENALTY_WINDOW, dtype=torch.long, device=device)
        self._columns = torch.arange(PENALTY_WINDOW, device=device)
        self.items: list[Optional[ItemSampling]] = [None] * max_rows
        self._drawn = np.zeros(max_rows, dtype=np.int64)  # the steps of each row, on the host
        self._flags: Optional[_Flags] = None
        self._bufs: dict[str, torch.Tensor] = {}
        self._gens: dict[int, torch.Generator] = {}

    @classmethod
    def for_items(
        cls,
        items: list[ItemSampling],
        heads: int,
        vocab: int,
        eos_id: int,
        device: torch.device,
        batch_seed: Optional[int] = None,
    ) -> RowSampler:
        """A sampler whose rows are ``items``, in order."""
        sampler = cls(heads, vocab, eos_id, device, len(items), batch_seed)
        for row, item in enumerate(items):
            sampler.set(row, item)
        return sampler

    def _rows(self, row: int) -> slice:
        return slice(row * self.heads, (row + 1) * self.heads)

    def set(self, row: int, item: ItemSampling) -> None:
        """Row ``row`` starts ``item`` (its step count and penalty window from zero)."""
        h, rows = self.heads, self._rows(row)
        t = item.temperature
        temps = list(t) if isinstance(t, (list, tuple)) else [t] * h
        if len(temps) != h:
            raise ValueError(f"temperature needs {h} values, got {len(temps)}")
        self.temperature[rows, 0] = torch.tensor([float(x) for x in temps])
        self.penalty[rows] = float(item.repetition_penalty)
        self.top_p_threshold[rows] = -1.0 if item.top_p is None else 1 - item.top_p
        k = (
            self.vocab
            if item.top_k is None
            else min(max(item.top_k, MIN_TOKENS_TO_KEEP), self.vocab)
        )
        self.top_k[rows] = k - 1
        self.min_new[rows] = item.min_new_token
        self.steps[rows] = 0
        self.window[rows] = 0
        self.items[row] = item
        self._drawn[row] = 0
        self._flags = None

    def move(self, src: int, dst: int) -> None:
        """Row ``dst`` takes row ``src``'s item and state (``src`` is free afterwards)."""
        a, b = self._rows(src), self._rows(dst)
        for t in (self.temperature, self.penalty, self.top_p_threshold, self.top_k):
            t[b] = t[a]
        for t in (self.min_new, self.steps, self.window):
            t[b] = t[a]
        self.items[dst], self.items[src] = self.items[src], None
        self._drawn[dst] = self._drawn[src]
        self._flags = None

    def _flags_for(self, n: int) -> _Flags:
        flags = self._flags
        if flags is None or flags.n != n:
            items = [it for it in self.items[:n] if it is not None]
            ks = [self.vocab if it.top_k is None else it.top_k for it in items]
            has_k = any(it.top_k is not None for it in items)
            flags = self._flags = _Flags(
                n,
                any(it.repetition_penalty != 1.0 for it in items),
                any(it.top_p is not None for it in items),
                min(max(max(ks), MIN_TOKENS_TO_KEEP), self.vocab) if has_k else 0,
                any(it.min_new_token > 0 for it in items),
                tuple(it.seed for it in items),
            )
        return flags

    def _buf(self, name: str, like: torch.Tensor, dtype: Optional[torch.dtype] = None):
        """A work buffer shaped like ``like``, allocated on first use (then reused every step)."""
        dtype = dtype or like.dtype
        buf = self._bufs.get(name)
        if buf is None or buf.shape != like.shape or buf.dtype != dtype:
            buf = self._bufs[name] = torch.empty(like.shape, dtype=dtype, device=like.device)
        return buf

    def _generator(self, seed: int) -> torch.Generator:
        gen = self._gens.get(seed)
        if gen is None:
            gen = self._gens[seed] = torch.Generator(device=self.device)
        gen.manual_seed(seed)
        return gen

    def process(self, logits: torch.Tensor) -> torch.Tensor:
        """Apply temperature, penalty, top-P, top-K and the EOS rule, in place.

        Args:
            logits: (N, V) float32 logits of this step for the first N / heads rows
                (modified in place).

        Returns:
            ``logits``, processed. Work tensors are reused from step to step.
        """
        inf = float("inf")
        n_rows = logits.shape[0]
        f = self._flags_for(n_rows // self.heads)
        logits.div_(self.temperature[:n_rows])
        if f.penalty and int(self._drawn[: f.n].max()) > 0:
            window = self.window[:n_rows]
            counts = self._buf("counts", logits).zero_()
            valid = torch.lt(
                self._columns[None],
                self.steps[:n_rows, None],
                out=self._buf("valid", window, torch.bool),
            )
            ones = self._buf("ones", window, counts.dtype).copy_(valid)
            counts.scatter_add_(1, window, ones)
            alpha = torch.pow(self.penalty[:n_rows], counts, out=self._buf("alpha", logits))
            times = torch.mul(logits, alpha, out=self._buf("times", logits))
            torch.div(logits, alpha, out=alpha)
            neg = torch.lt(logits, 0, out=self._buf("neg", logits, torch.bool))
            torch.where(neg, times, alpha, out=logits)
        if f.top_p:
            sorted_logits, order = torch.sort(
                logits,
                descending=False,
                out=(self._buf("sorted", logits), self._buf("order", logits, torch.long)),
            )
            cum = torch.softmax(sorted_logits, dim=-1, out=self._buf("cum", logits))
            torch.cumsum(cum, dim=-1, out=cum)
            drop_sorted = torch.le(
                cum, self.top_p_threshold[:n_rows], out=self._buf("drop_s", cum, torch.bool)
            )
            drop_sorted[:, -MIN_TOKENS_TO_KEEP:] = False
            drop = self._buf("drop", drop_sorted).scatter_(1, order, drop_sorted)
            logits.masked_fill_(drop, -inf)
        if f.top_k_max:
            top = torch.topk(logits, f.top_k_max, dim=-1).values
            kth = top.gather(1, self.top_k[:n_rows])
            logits.masked_fill_(
                torch.lt(logits, kth, out=self._buf("below", logits, torch.bool)), -inf
            )
        if f.early:
            early = self.steps[:n_rows] < self.min_new[:n_rows]
            if bool(early.any()):
                logits[early, self.eos_id] = -inf
        return logits

    def draw(self, logits: torch.Tensor) -> torch.Tensor:
        """Softmax and one multinomial draw per logits row: (N, V) -> (N,) int64."""
        probs = torch.softmax(logits, dim=-1, out=self._buf("probs", logits))
        if self.batch_seed is not None:
            return torch.multinomial(probs, 1, generator=self._generator(self.batch_seed))[:, 0]
        seeds = self._flags_for(probs.shape[0] // self.heads).seeds
        if all(s is None for s in seeds):
            return torch.multinomial(probs, 1)[:, 0]
        out = torch.empty(probs.shape[0], dtype=torch.long, device=probs.device)
        h = self.heads
        unseeded = [i for i, s in enumerate(seeds) if s is None]
        for i, s in enumerate(seeds):
            if s is not None:
                out[i * h : (i + 1) * h] = torch.multinomial(
                    probs[i * h : (i + 1) * h], 1, generator=self._generator(s)
                )[:, 0]
        if unseeded:
            rows = torch.tensor(
                [i * h + j for i in unseeded for j in range(h)], device=probs.device
            )
            out[rows] = torch.multinomial(probs[rows], 1)[:, 0]
        return out

    def record(self, tokens: torch.Tensor) -> None:
        """The tokens (N,) just drawn by the first N / heads rows: their steps advance and the
        tokens enter their penalty windows."""
        n_rows = tokens.shape[0]
        column = torch.remainder(self.steps[:n_rows], PENALTY_WINDOW)
        self.window[:n_rows].scatter_(1, column[:, None], tokens[:, None])
        self.steps[:n_rows] += 1
        self._drawn[: n_rows // self.heads] += 1
