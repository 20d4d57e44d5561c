"""Sampling rules of one generation step as tensor operations (REFERENCE.md §5, steps 3–7).

Every rule works per row, so items with different parameters (and seeds) share one batch:
temperature, repetition penalty over the last 16 generated tokens, top-P then top-K (each
keeping at least 3 tokens, as transformers' warpers do), EOS masked before ``min_new_token``,
softmax and one multinomial draw per row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

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


class RowSampler:
    """The sampling state of a batch: per-row parameters as (N, 1) tensors, N = B · heads.

    Args:
        items: one :class:`ItemSampling` per batch item.
        heads: rows per item (1 for the refine pass, num_vq for the code pass).
        vocab: size of each row's vocabulary.
        eos_id: the EOS token of a row.
        device: where logits live.
        batch_seed: the reference's ``manual_seed``: one generator for the whole batch,
            re-seeded before every step's draw.
    """

    def __init__(
        self,
        items: list[ItemSampling],
        heads: int,
        vocab: int,
        eos_id: int,
        device: torch.device,
        batch_seed: Optional[int] = None,
    ) -> None:
        self.items = items
        self.heads = heads
        self.vocab = vocab
        self.eos_id = eos_id
        self.device = device
        self.batch_seed = batch_seed

        def rows(values: list[float], dtype=torch.float32) -> torch.Tensor:
            return torch.tensor(values, dtype=dtype, device=device).view(-1, 1)

        temps: list[float] = []
        for it in items:
            t = it.temperature
            t = list(t) if isinstance(t, (list, tuple)) else [t] * heads
            if len(t) != heads:
                raise ValueError(f"temperature needs {heads} values, got {len(t)}")
            temps += [float(x) for x in t]
        self.temperature = rows(temps)
        per_row = [it for it in items for _ in range(heads)]
        pens = [float(it.repetition_penalty) for it in per_row]
        self.penalty = rows(pens) if any(p != 1.0 for p in pens) else None
        self.top_p_threshold = None
        if any(it.top_p is not None for it in per_row):
            # compared as in transformers: cumulative probability <= 1 - top_p is removed
            self.top_p_threshold = rows(
                [(1 - it.top_p) if it.top_p is not None else -1.0 for it in per_row]
            )
        self.top_k = None
        if any(it.top_k is not None for it in per_row):
            ks = [
                min(max(it.top_k, MIN_TOKENS_TO_KEEP), vocab) if it.top_k is not None else vocab
                for it in per_row
            ]
            self.top_k_max = max(ks)
            self.top_k = torch.tensor(ks, dtype=torch.long, device=device).view(-1, 1) - 1
        self.min_new = torch.tensor([it.min_new_token for it in per_row], device=device)
        self._early = bool((self.min_new > 0).any())
        self._bufs: dict[str, torch.Tensor] = {}
        self._gens: dict[int, torch.Generator] = {}

    def select(self, items: torch.Tensor) -> RowSampler:
        """A sampler for the batch items ``items`` (indices), for dropping finished items."""
        idx = items.tolist()
        new = RowSampler.__new__(RowSampler)
        new.__dict__.update(self.__dict__)
        new.items = [self.items[i] for i in idx]
        rows = (
            items[:, None] * self.heads + torch.arange(self.heads, device=items.device)
        ).reshape(-1)
        for name in ("temperature", "penalty", "top_p_threshold", "top_k", "min_new"):
            value = getattr(self, name)
            setattr(new, name, None if value is None else value[rows])
        new._bufs = {}  # work buffers are re-made at the new row count
        return new

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

    def process(self, logits: torch.Tensor, history: torch.Tensor, step: int) -> torch.Tensor:
        """Apply temperature, penalty, top-P, top-K and the EOS rule, in place.

        Args:
            logits: (N, V) float32 logits of this step (modified in place).
            history: (N, S) generated tokens so far (S ≥ ``step``), row-major like ``logits``.
            step: index of this step from 0.

        Returns:
            ``logits``, processed. Work tensors are reused from step to step.
        """
        inf = float("inf")
        logits.div_(self.temperature)
        if self.penalty is not None and step > 0:
            lo = max(0, step - PENALTY_WINDOW)
            window = history[:, lo:step]
            counts = self._buf("counts", logits).zero_()
            ones = self._buf("ones", window, counts.dtype).fill_(1.0)
            counts.scatter_add_(1, window, ones)
            alpha = torch.pow(self.penalty, counts, out=self._buf("alpha", logits))
            times = torch.mul(logits, alpha, out=self._buf("times", logits))
            torch.div(logits, alpha, out=alpha)
            neg = torch.lt(logits, 0, out=self._buf("neg", logits, torch.bool))
            torch.where(neg, times, alpha, out=logits)
        if self.top_p_threshold is not None:
            sorted_logits, order = torch.sort(
                logits,
                descending=False,
                out=(self._buf("sorted", logits), self._buf("order", logits, torch.long)),
            )
            cum = torch.softmax(sorted_logits, dim=-1, out=self._buf("cum", logits))
            torch.cumsum(cum, dim=-1, out=cum)
            drop_sorted = torch.le(
                cum, self.top_p_threshold, out=self._buf("drop_s", cum, torch.bool)
            )
            drop_sorted[:, -MIN_TOKENS_TO_KEEP:] = False
            drop = self._buf("drop", drop_sorted).scatter_(1, order, drop_sorted)
            logits.masked_fill_(drop, -inf)
        if self.top_k is not None:
            top = torch.topk(logits, self.top_k_max, dim=-1).values
            kth = top.gather(1, self.top_k)
            logits.masked_fill_(
                torch.lt(logits, kth, out=self._buf("below", logits, torch.bool)), -inf
            )
        if self._early:
            early = step < self.min_new
            if bool(early.any()):
                logits[early, self.eos_id] = -inf
        return logits

    def draw(self, logits: torch.Tensor) -> torch.Tensor:
        """Softmax and one multinomial draw per row: (N, V) -> (N,) int64."""
        probs = torch.softmax(logits, dim=-1, out=self._buf("probs", logits))
        if self.batch_seed is not None:
            return torch.multinomial(probs, 1, generator=self._generator(self.batch_seed))[:, 0]
        seeds = [it.seed for it in self.items]
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
