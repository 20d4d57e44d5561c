"""One generation loop for the refine and code passes, static or continuous batches.

A pass is described by :class:`PassHeads` (how a drawn token is embedded, how hidden states
become logits, its EOS); the loop itself is :class:`chattts.generation.run.Run`: a GPT session
(its KV cache sized once for ``max_batch`` rows), a prefill per joining row (or batch of rows),
then one-token decode steps of every row, rows leaving as they end.

* :meth:`Engine.steps`: a static batch (the reference's semantics): every item joins at step
  0, and the generator yields a :class:`GenerationState` after every step so that streaming
  consumers see tokens as they are drawn; with a batch seed rows stay to the end.
* :meth:`Engine.open_run`: a :class:`~chattts.generation.run.Run` that a scheduler drives,
  adding rows at step boundaries and removing them (continuous batching; docs/engine.md).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Optional

import torch

from ..model.embed import Embed
from ..options import EngineOptions
from .backend import GPTBackend
from .run import PassHeads, RowOutput, Run
from .sampling import ItemSampling

__all__ = ["Engine", "GenerationState", "Interrupt", "PassHeads", "MAX_RESTARTS"]

logger = logging.getLogger("chattts")

#: Restarts allowed by ``ensure_non_empty`` before empty items are accepted.
MAX_RESTARTS = 100


@dataclass
class GenerationState:
    """Outputs of a generation so far; buffers are allocated once, for ``max_new_token`` steps.

    Attributes:
        tokens: (B, S_max, heads) drawn tokens.
        hiddens: (B, S_max, H) float32 hidden states (code pass), hidden k predicting token k.
        lengths: (B,) steps generated before each item's EOS (all steps while unfinished).
        finished: (B,) bool, the item drew EOS.
        step: steps run so far.
        interrupted: the generation was stopped by an interrupt.
    """

    tokens: torch.Tensor
    hiddens: Optional[torch.Tensor]
    lengths: torch.Tensor
    finished: torch.Tensor
    step: int = 0
    interrupted: bool = False
    restarts: int = field(default=0)

    def item_tokens(self, i: int) -> torch.Tensor:
        """(T_i, heads) tokens of item i before its EOS."""
        return self.tokens[i, : int(self.lengths[i])]

    def item_hiddens(self, i: int) -> torch.Tensor:
        """(T_i, H) hidden states of item i."""
        assert self.hiddens is not None
        return self.hiddens[i, : int(self.lengths[i])]


class Interrupt:
    """A flag that stops one generation in flight (thread-safe)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()


class Engine:
    """Runs passes of the GPT, one :class:`~chattts.generation.run.Run` (one GPT session, so
    one cache) per generation.

    Built by :func:`chattts.generation.build.build_engine`, which applies the speed options.

    Args:
        embed: embeddings and heads.
        backend: runs the GPT.
        options: the options the engine was built with.
    """

    def __init__(
        self,
        embed: Embed,
        backend: GPTBackend,
        options: EngineOptions = EngineOptions(),  # noqa: B008 - frozen
    ) -> None:
        self.embed = embed
        self.backend = backend
        self.options = options

    @property
    def device(self) -> torch.device:
        return self.embed.emb_text.weight.device

    @property
    def static_decode(self) -> bool:
        """Decode steps have fixed shapes (the compiled step): finished rows stay in the batch."""
        return self.backend.fixed_shapes

    def refine_heads(self, eos_id: int) -> PassHeads:
        emb, dtype = self.embed, self.backend.dtype
        return PassHeads(
            heads=1,
            vocab=emb.num_text_tokens,
            eos_id=eos_id,
            embed_tokens=lambda tok: emb.embed_text(tok[:, 0]).to(dtype),
            logits=lambda h: emb.text_logits(h.to(emb.dtype)).float(),
            keep_hidden=False,
        )

    def code_heads(self) -> PassHeads:
        emb, dtype = self.embed, self.backend.dtype
        return PassHeads(
            heads=emb.num_vq,
            vocab=emb.num_audio_tokens,
            eos_id=emb.num_audio_tokens - 1,
            embed_tokens=lambda tok: emb.embed_code(tok).to(dtype),
            logits=lambda h: emb.code_logits(h).float(),
            keep_hidden=True,
        )

    # ---- generation -------------------------------------------------------------------------

    def open_run(
        self,
        heads: PassHeads,
        max_batch: int,
        capacity: int,
        *,
        batch_seed: Optional[int] = None,
    ) -> Run:
        """A continuous-batching run of ``heads``' pass: up to ``max_batch`` rows of up to
        ``capacity`` positions each (prompt and generated tokens); see
        :mod:`chattts.generation.run`."""
        return Run(self.backend, heads, max_batch, capacity, self.device, batch_seed)

    def steps(
        self,
        embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        heads: PassHeads,
        items: list[ItemSampling],
        batch_seed: Optional[int] = None,
        interrupt: Optional[Interrupt] = None,
        progress: Optional[Callable[[int, int], None]] = None,
        ensure_non_empty: bool = False,
        cancelled: Optional[list[Interrupt]] = None,
    ) -> Iterator[GenerationState]:
        """Generate a static batch, yielding the state after every step.

        Args:
            embeds: (B, T, H) prompt embeddings (speaker already applied).
            attention_mask: (B, T), 1 on real tokens.
            heads: the pass.
            items: per-item sampling parameters (``max_new_token`` is the largest of them).
            batch_seed: the reference's ``manual_seed`` for the whole batch.
            interrupt: stops the loop within one step when set.
            progress: called with (step, max_steps) after every step.
            ensure_non_empty: restart the whole generation when an item draws EOS at step 0
                (only without seeds, where a restart can draw differently).
            cancelled: one flag per item; a set flag ends that item (its output so far stays).
        """
        can_restart = (
            ensure_non_empty and batch_seed is None and all(it.seed is None for it in items)
        )
        for attempt in range(MAX_RESTARTS + 1):
            restart = False
            for state in self._run(
                embeds, attention_mask, heads, items, batch_seed, interrupt, progress, cancelled
            ):
                if (
                    state.step == 1
                    and can_restart
                    and bool(state.finished.any())
                    and bool((state.lengths == 0).any())
                    and attempt < MAX_RESTARTS
                ):
                    logger.debug("an item ended at step 0: restarting the generation")
                    restart = True
                    break
                state.restarts = attempt
                yield state
            if not restart:
                return

    @torch.inference_mode()
    def _run(
        self,
        embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        heads: PassHeads,
        items: list[ItemSampling],
        batch_seed: Optional[int],
        interrupt: Optional[Interrupt],
        progress: Optional[Callable[[int, int], None]],
        cancelled: Optional[list[Interrupt]] = None,
    ) -> Iterator[GenerationState]:
        """The static batch on a run: every item joins at step 0, each item's outputs are its
        row of the state's buffers."""
        b, t, hidden = embeds.shape
        max_new = max(it.max_new_token for it in items)
        if max_new < 1:
            return
        state = _new_state(b, max_new, heads, hidden, embeds.device)
        outputs = [
            RowOutput(
                it,
                state.tokens[i, : it.max_new_token],
                None if state.hiddens is None else state.hiddens[i, : it.max_new_token],
            )
            for i, it in enumerate(items)
        ]
        with self.open_run(heads, b, t + max_new, batch_seed=batch_seed) as run:
            slots = run.add_batch(embeds, attention_mask, items, outputs=outputs)
            item_of = {slot: i for i, slot in enumerate(slots)}
            ended = 0
            for step in range(max_new):
                if interrupt is not None and interrupt.is_set():
                    state.interrupted = True
                    break
                for event in run.step():
                    i = item_of[event.slot]
                    state.lengths[i] = event.output.length
                    if event.finished:
                        state.finished[i] = True
                        ended += 1
                state.step = step + 1
                if progress is not None:
                    progress(step + 1, max_new)
                yield state
                for i, flag in enumerate(cancelled or ()):
                    if flag.is_set() and not outputs[i].finished:
                        run.remove(slots[i])
                        state.finished[i] = True
                        ended += 1
                if ended == b or step + 1 == max_new:
                    break


def _new_state(
    b: int, max_new: int, heads: PassHeads, hidden: int, device: torch.device
) -> GenerationState:
    """Empty outputs of a static batch of ``b`` items."""
    return GenerationState(
        tokens=torch.zeros(b, max_new, heads.heads, dtype=torch.long, device=device),
        hiddens=(torch.zeros(b, max_new, hidden, device=device) if heads.keep_hidden else None),
        lengths=torch.zeros(b, dtype=torch.long, device=device),
        finished=torch.zeros(b, dtype=torch.bool, device=device),
    )
