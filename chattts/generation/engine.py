"""One generation loop for the refine and code passes.

A pass is described by :class:`PassHeads` (how a drawn token is embedded, how hidden states
become logits, its EOS); the loop itself is the same: a GPT session (its KV cache sized once
for the prompt and ``max_new_token`` steps), a prefill, then one-token decode steps.
:meth:`Engine.steps` yields after every step so that streaming consumers see tokens as they
are drawn.
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
from .sampling import ItemSampling, RowSampler

logger = logging.getLogger("chattts")

#: Restarts allowed by ``ensure_non_empty`` before empty items are accepted.
MAX_RESTARTS = 100


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
    """Runs passes of the GPT, one :class:`GPTSession` (and so one cache) per generation.

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
            logits=lambda h: emb.text_logits(h.to(emb.emb_text.weight.dtype)).float(),
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
        """Generate, yielding the state after every step.

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
        b, t, hidden = embeds.shape
        device = embeds.device
        max_new = max(it.max_new_token for it in items)
        item_max = torch.tensor([it.max_new_token for it in items], device=device)
        sampler = RowSampler(items, heads.heads, heads.vocab, heads.eos_id, device, batch_seed)
        state = GenerationState(
            tokens=torch.zeros(b, max_new, heads.heads, dtype=torch.long, device=device),
            hiddens=(torch.zeros(b, max_new, hidden, device=device) if heads.keep_hidden else None),
            lengths=torch.zeros(b, dtype=torch.long, device=device),
            finished=torch.zeros(b, dtype=torch.bool, device=device),
        )
        # the reference keeps feeding finished items; with a batch seed their rows must stay
        # so that every row draws the same random numbers, otherwise finished items leave
        # (not with the static step, whose shapes must not change)
        compact = batch_seed is None and not self.backend.fixed_shapes
        active = torch.arange(b, device=device)
        history = torch.zeros(b * heads.heads, max_new, dtype=torch.long, device=device)
        gpt = self.backend.open(b, t + max_new)
        try:
            h = gpt.prefill(embeds, attention_mask)
            for step in range(max_new):
                if interrupt is not None and interrupt.is_set():
                    state.interrupted = True
                    break
                logits = sampler.process(heads.logits(h), history, step)
                tok = sampler.draw(logits)
                history[:, step] = tok
                tok = tok.view(-1, heads.heads)
                state.tokens[active, step] = tok
                if state.hiddens is not None:
                    state.hiddens[active, step] = h.float()
                running = ~state.finished[active]
                eos = (tok == heads.eos_id).any(-1)
                state.lengths[active] += running & ~eos
                state.finished[active] |= eos | (step + 1 >= item_max[active])
                state.step = step + 1
                if progress is not None:
                    progress(step + 1, max_new)
                yield state
                if cancelled is not None:
                    gone = [i for i, flag in enumerate(cancelled) if flag.is_set()]
                    state.finished[gone] = True
                if bool(state.finished.all()) or step + 1 == max_new:
                    break
                if compact and bool(state.finished[active].any()):
                    keep = (~state.finished[active]).nonzero()[:, 0]
                    active, sampler = active[keep], sampler.select(keep)
                    gpt.select(keep)
                    history = history.view(-1, heads.heads, max_new)[keep].view(-1, max_new)
                    tok = tok[keep]
                h = gpt.decode(heads.embed_tokens(tok)[:, None])
        finally:
            gpt.close()
