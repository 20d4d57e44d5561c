"""Continuous batching: a generation whose rows join at step boundaries and leave as they end.

A :class:`Run` owns one GPT session (its KV cache sized once for ``max_batch`` rows of
``capacity`` positions each) and the sampling state of its rows. A scheduler drives it::

    run = engine.open_run(engine.code_heads(), max_batch=8, capacity=1024)
    slot = run.add(embeds, ItemSampling(seed=7, max_new_token=600), cancel)  # (T, H) prompt
    while run.active:
        for event in run.step():           # one token per row in the batch
            event.token, event.hidden      # (heads,) drawn token, (H,) hidden state
            event.output.tokens[: event.output.steps]   # everything the row drew so far
            if event.finished: ...         # EOS, max_new_token or cancelled: it has left
        # rows may be added (run.add) or removed (run.remove) between steps
    run.close()

What a step does: rows whose cancel flag is set leave; the rows in the batch feed their last
token through one decode step; rows added since the last step have their prompts prefilled
on their own (one forward per :meth:`Run.add_batch` call) into free rows of the cache; every
row draws its next token; rows that drew EOS, reached their ``max_new_token`` or were
cancelled leave at once, freeing their slot (another row takes their place in the cache).

Each row has its own positions in the cache (rotary positions 0 … L−1 from its prompt on, a
key mask when rows' lengths differ) and its own sampling state (step count, repetition window,
``ItemSampling.seed`` re-seeded before each of its draws), so a seeded row draws the same
tokens whatever it is batched with and whenever it joined, up to the float32 rounding of
batched matrix products (docs/engine.md, "Continuous batching"). With ``batch_seed`` (the
reference's ``manual_seed`` for a whole batch) every row draws from the one generator, so rows
stay in the batch to the end (fed their tokens after their EOS, as the reference does).
"""

from __future__ import annotations

import contextlib
import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Optional, Protocol

import torch

from ..errors import BatchFullError, ParameterError
from ..runtime import gpt_threads
from .backend import GPTBackend
from .sampling import ItemSampling, RowSampler


class Cancel(Protocol):
    """What :meth:`Run.add` accepts as a cancel flag (an :class:`~.engine.Interrupt`, a
    ``threading.Event``...)."""

    def is_set(self) -> bool: ...


@dataclass
class PassHeads:
    """What distinguishes a pass: token embedding, logits, EOS, outputs kept.

    Attributes:
        heads: tokens drawn per item and step (1 refine, num_vq code).
        vocab: size of each head's vocabulary.
        eos_id: the EOS token of every head.
        embed_tokens: (B, heads) tokens -> (B, H) embeddings of the next input.
        logits: (B, H) hidden states -> (B · heads, vocab) float32 logits.
        keep_hidden: keep each step's hidden state (the code pass feeds the Decoder).
    """

    heads: int
    vocab: int
    eos_id: int
    embed_tokens: Callable[[torch.Tensor], torch.Tensor]
    logits: Callable[[torch.Tensor], torch.Tensor]
    keep_hidden: bool


@dataclass(eq=False)
class RowOutput:
    """What one row has generated so far, written in place by its run after every step.

    Attributes:
        sampling: the row's sampling parameters.
        tokens: (max_new_token, heads) int64; the first ``steps`` are drawn (the last of them
            is the EOS token when the row ended by EOS).
        hiddens: (max_new_token, H) float32, hidden state k predicting token k (None unless
            the pass keeps them).
        steps: tokens drawn.
        length: tokens before EOS.
        finished: the row has ended (it grows no more).
        cancelled: it ended by its cancel flag or :meth:`Run.remove`.
    """

    sampling: ItemSampling
    tokens: torch.Tensor
    hiddens: Optional[torch.Tensor]
    steps: int = 0
    length: int = 0
    finished: bool = False
    cancelled: bool = False

    def item_tokens(self) -> torch.Tensor:
        """(length, heads) tokens before EOS."""
        return self.tokens[: self.length]

    def item_hiddens(self) -> torch.Tensor:
        """(length, H) hidden states of those tokens."""
        assert self.hiddens is not None
        return self.hiddens[: self.length]


@dataclass(frozen=True, eq=False)
class RowEvent:
    """What one step did to one row.

    Attributes:
        slot: the row's slot.
        output: the row's outputs so far.
        token: (heads,) the token drawn at this step (a view of ``output.tokens``); None for
            a row that left by its cancel flag before drawing.
        hidden: (H,) the hidden state that predicted it (None without ``keep_hidden``).
        finished: the row has ended and left the run (its slot is free again).
    """

    slot: int
    output: RowOutput
    token: Optional[torch.Tensor]
    hidden: Optional[torch.Tensor]
    finished: bool


@dataclass(eq=False)
class _Row:
    slot: int
    output: RowOutput
    cancel: Optional[Cancel]


@dataclass(eq=False)
class _Group:
    """Rows added together, prefilled in one forward at the next step."""

    embeds: torch.Tensor
    mask: torch.Tensor
    rows: list[_Row] = field(default_factory=list)


class Run:
    """A continuous-batching generation over one GPT session (see the module docstring).

    Built by :meth:`chattts.generation.engine.Engine.open_run`. One thread drives a run
    (``add``, ``step``, ``remove``); cancel flags may be set from any thread.

    Args:
        backend: runs the GPT (a session of ``max_batch`` rows is opened here).
        heads: the pass.
        max_batch: the most rows at once (slots 0 … max_batch − 1).
        capacity: positions per row: a row's prompt plus its ``max_new_token`` must fit.
        device: where tokens and sampling state live.
        batch_seed: the reference's ``manual_seed`` for the whole batch (rows then stay to the
            end of the run).
    """

    def __init__(
        self,
        backend: GPTBackend,
        heads: PassHeads,
        max_batch: int,
        capacity: int,
        device: torch.device,
        batch_seed: Optional[int] = None,
    ) -> None:
        if max_batch < 1 or capacity < 2:
            raise ParameterError(f"max_batch ≥ 1 and capacity ≥ 2, not {max_batch}, {capacity}")
        self.heads = heads
        self.max_batch = max_batch
        self.capacity = capacity
        self.device = torch.device(device)
        self.batch_seed = batch_seed
        self._threads = backend.torch_threads
        self._sampler = RowSampler(
            heads.heads, heads.vocab, heads.eos_id, self.device, max_batch, batch_seed
        )
        self._rows: list[_Row] = []  # the rows in the session, in its order
        self._queue: list[_Group] = []  # added, prefilled at the next step
        self._free = list(range(max_batch))  # a heap: the lowest free slot first
        self._last = torch.zeros(max_batch, heads.heads, dtype=torch.long, device=self.device)
        self._h: Optional[torch.Tensor] = None  # (max_batch, H) the rows' hidden states
        self._session = backend.open(max_batch, capacity)
        self._closed = False

    # ---- rows -------------------------------------------------------------------------------

    @property
    def active(self) -> list[int]:
        """Slots of the rows in the run (in the batch or waiting for the next step)."""
        return [r.slot for r in self._rows] + [r.slot for g in self._queue for r in g.rows]

    @property
    def free(self) -> int:
        """Slots free for :meth:`add`."""
        return len(self._free)

    def output(self, slot: int) -> RowOutput:
        """The outputs of the row in ``slot``."""
        return self._find(slot).output

    def add(
        self,
        embeds: torch.Tensor,
        sampling: ItemSampling,
        cancel: Optional[Cancel] = None,
        output: Optional[RowOutput] = None,
    ) -> int:
        """A row joins at the next step: embeds (T, H) of its prompt; returns its slot.

        ``cancel`` (anything with ``is_set()``) ends the row at the next step once set;
        ``output``: where its tokens go (default: new buffers of ``max_new_token`` steps).

        Raises:
            BatchFullError: no slot is free.
            ParameterError: the prompt plus ``max_new_token`` exceed the capacity.
        """
        if embeds.dim() != 2:
            raise ParameterError(f"a row's prompt embeddings are (T, H), not {tuple(embeds.shape)}")
        mask = torch.ones(1, embeds.shape[0], dtype=torch.long, device=embeds.device)
        outputs = None if output is None else [output]
        return self.add_batch(embeds[None], mask, [sampling], [cancel], outputs)[0]

    @torch.inference_mode()
    def add_batch(
        self,
        embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        samplings: Sequence[ItemSampling],
        cancels: Optional[Sequence[Optional[Cancel]]] = None,
        outputs: Optional[Sequence[RowOutput]] = None,
    ) -> list[int]:
        """Rows that join together (one prefill): embeds (k, T, H), attention_mask (k, T) with
        1 on real tokens (any padding); returns their slots, in order. See :meth:`add`."""
        self._check_open()
        k = embeds.shape[0]
        if embeds.dim() != 3 or tuple(attention_mask.shape) != tuple(embeds.shape[:2]):
            raise ParameterError(
                f"prompts (k, T, H) with a (k, T) mask, not {tuple(embeds.shape)} and "
                f"{tuple(attention_mask.shape)}"
            )
        if len(samplings) != k or (outputs is not None and len(outputs) != k):
            raise ParameterError(f"{k} prompts need {k} samplings (and outputs)")
        if k > len(self._free):
            raise BatchFullError(f"{k} rows for {len(self._free)} free slots of {self.max_batch}")
        lengths = attention_mask.bool().sum(-1).tolist()
        for n, item in zip(lengths, samplings, strict=True):
            if item.max_new_token < 1 or n + item.max_new_token > self.capacity:
                raise ParameterError(
                    f"a prompt of {n} tokens and max_new_token={item.max_new_token} in a run "
                    f"of {self.capacity} positions per row"
                )
        group = _Group(embeds, attention_mask)
        for j, item in enumerate(samplings):
            out = outputs[j] if outputs is not None else self._new_output(item, embeds)
            cancel = cancels[j] if cancels is not None else None
            group.rows.append(_Row(heapq.heappop(self._free), out, cancel))
        self._queue.append(group)
        return [r.slot for r in group.rows]

    def _new_output(self, item: ItemSampling, embeds: torch.Tensor) -> RowOutput:
        n = item.max_new_token
        tokens = torch.zeros(n, self.heads.heads, dtype=torch.long, device=self.device)
        hiddens = None
        if self.heads.keep_hidden:
            hiddens = torch.zeros(n, embeds.shape[-1], device=self.device)
        return RowOutput(item, tokens, hiddens)

    def remove(self, slot: int) -> None:
        """The row in ``slot`` ends now (marked cancelled) and leaves; its slot is free again.
        With a batch seed it is marked finished but stays in the batch."""
        row = self._find(slot)
        row.output.finished = row.output.cancelled = True
        for group in self._queue:
            if row in group.rows:
                self._unqueue(group, row)
                return
        if self.batch_seed is None:
            self._leave(self._rows.index(row))

    def _find(self, slot: int) -> _Row:
        for row in [*self._rows, *(r for g in self._queue for r in g.rows)]:
            if row.slot == slot:
                return row
        raise ValueError(f"slot {slot} holds no row of this run")

    def _unqueue(self, group: _Group, row: _Row) -> None:
        j = group.rows.index(row)
        keep = [i for i in range(len(group.rows)) if i != j]
        group.embeds, group.mask = group.embeds[keep], group.mask[keep]
        group.rows.pop(j)
        if not group.rows:
            self._queue.remove(group)
        heapq.heappush(self._free, row.slot)

    def _leave(self, i: int) -> None:
        """Row i leaves the batch: the last row takes its place (cache, sampler, last token)."""
        last = len(self._rows) - 1
        slot = self._rows[i].slot
        self._session.remove(i)
        if i != last:
            self._sampler.move(last, i)
            self._last[i] = self._last[last]
            self._rows[i] = self._rows[last]
        self._rows.pop()
        heapq.heappush(self._free, slot)

    # ---- steps ------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the run is closed")

    def step(self) -> list[RowEvent]:
        """One step of every row (see the module docstring); events in row order."""
        self._check_open()
        scope = gpt_threads(self._threads) if self._threads else contextlib.nullcontext()
        with scope:
            return self._step()

    @torch.inference_mode()
    def _step(self) -> list[RowEvent]:
        events = self._cancelled()
        n = len(self._rows)
        if n:
            x = self.heads.embed_tokens(self._last[:n])[:, None]
            self._store(0, self._session.decode(x))
        for group in self._queue:
            self._store(n, self._session.prefill(group.embeds, group.mask))
            for j, row in enumerate(group.rows):
                self._sampler.set(n + j, row.output.sampling)
            self._rows += group.rows
            n += len(group.rows)
        self._queue = []
        if n == 0:
            return events
        h = self._h[:n]
        tokens = self._sampler.draw(self._sampler.process(self.heads.logits(h)))
        self._sampler.record(tokens)
        tokens = tokens.view(n, self.heads.heads)
        self._last[:n] = tokens
        return events + self._record(tokens, h)

    def _store(self, start: int, h: torch.Tensor) -> None:
        """Hidden states (k, H) of rows [start, start + k)."""
        if self._h is None:
            self._h = torch.empty(self.max_batch, h.shape[-1], dtype=h.dtype, device=h.device)
        self._h[start : start + h.shape[0]] = h

    def _cancelled(self) -> list[RowEvent]:
        """Rows whose cancel flag is set end before this step's work."""
        events = []
        for group in list(self._queue):
            for row in list(group.rows):
                if row.cancel is not None and row.cancel.is_set():
                    row.output.finished = row.output.cancelled = True
                    self._unqueue(group, row)
                    events.append(RowEvent(row.slot, row.output, None, None, True))
        for i in reversed(range(len(self._rows))):
            row = self._rows[i]
            if row.output.finished or row.cancel is None or not row.cancel.is_set():
                continue
            row.output.finished = row.output.cancelled = True
            events.append(RowEvent(row.slot, row.output, None, None, True))
            if self.batch_seed is None:
                self._leave(i)
        return events

    def _record(self, tokens: torch.Tensor, h: torch.Tensor) -> list[RowEvent]:
        """Write each row's token (and hidden state), end the rows that are done."""
        eos = (tokens == self.heads.eos_id).any(-1).tolist()
        hidden = h.float() if self.heads.keep_hidden else None
        events, done = [], []
        for i, row in enumerate(self._rows):
            out = row.output
            if out.finished:  # a batch-seed row after its end: fed, not recorded
                continue
            s = out.steps
            out.tokens[s] = tokens[i]
            if out.hiddens is not None and hidden is not None:
                out.hiddens[s] = hidden[i]
            out.steps = s + 1
            out.length += 0 if eos[i] else 1
            out.finished = eos[i] or out.steps >= out.sampling.max_new_token
            if out.finished:
                done.append(i)
            h_s = None if out.hiddens is None else out.hiddens[s]
            events.append(RowEvent(row.slot, out, out.tokens[s], h_s, out.finished))
        if self.batch_seed is None:
            for i in reversed(done):
                self._leave(i)
        return events

    def close(self) -> None:
        """End the run (its cache may be reused by the backend)."""
        if not self._closed:
            self._closed = True
            self._session.close()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
