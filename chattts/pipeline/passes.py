"""The stages over loaded models: prompts, the refine and code passes, speaker samples.

Each stage takes a batch as it is given: which texts go together, with which seeds and voices,
is decided by the request path above (:mod:`chattts.pipeline`). The torch modules below
(:mod:`chattts.model`) know nothing of prompts; audio decoding is :mod:`chattts.decode`'s
(docs/architecture.md, "Stages").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Optional, Union

import numpy as np
import torch

from ..errors import ParameterError
from ..generation.engine import GenerationState, Interrupt
from ..generation.sampling import ItemSampling
from ..params import InferCodeParams, RefineTextParams
from ..validation import MAX_SAMPLE_SECONDS, speaker_audio
from ..voices.speaker import decode_sample, decode_speaker, encode_sample, speaker_embedding
from .models import Models

logger = logging.getLogger("chattts")

_CODE_TAGS = ("[Stts]", "[spk_emb]", "[empty_spk]")


def refine_prompt(text: str, prompt: str) -> str:
    """The refine pass input: ``[Sbreak]`` text ``[Pbreak]`` prompt."""
    return f"[Sbreak]{text}[Pbreak]{prompt}"


def code_prompt(text: str, prompt: str, txt_smp: Optional[str], with_speaker: bool) -> str:
    """The code pass input: speaker tag, sample transcript, prompt, text, ``[Ptts]``."""
    for tag in _CODE_TAGS:
        text = text.replace(tag, "")
    spk = "[spk_emb]" if with_speaker else "[empty_spk]"
    return f"[Stts]{spk}{txt_smp or ''}{prompt}{text.strip()}[Ptts]"


def item_sampling(params: RefineTextParams, seed: Optional[int] = None) -> ItemSampling:
    """The per-item sampling parameters of a params object."""
    return ItemSampling(
        temperature=params.temperature,
        top_p=params.top_P,
        top_k=params.top_K,
        repetition_penalty=params.repetition_penalty,
        min_new_token=params.min_new_token,
        max_new_token=params.max_new_token,
        seed=seed,
    )


def fit_positions(
    items: list[ItemSampling], prompt: int, positions: int, what: str
) -> list[ItemSampling]:
    """``items`` with ``max_new_token`` (and ``min_new_token``) lowered so that the prompt of
    ``prompt`` positions plus the steps fit the model's ``positions``
    (``max_position_embeddings``), with a note in the log when any is lowered: every engine
    then stops at the same step, within the rotary table the model was trained on.

    Raises:
        ParameterError: the prompt alone takes every position (the text is too long).
    """
    room = positions - prompt
    if room < 1:
        raise ParameterError(
            f"the {what} pass prompt takes {prompt} positions and the model has {positions} "
            "(max_position_embeddings): shorten the text"
        )
    longest = max(it.max_new_token for it in items)
    if longest <= room:
        return items
    logger.info(
        "%s pass: max_new_token %d lowered to %d, so that the prompt (%d positions) and the "
        "steps fit the model's %d positions",
        what,
        longest,
        room,
        prompt,
        positions,
    )
    return [
        replace(
            it, max_new_token=min(it.max_new_token, room), min_new_token=min(it.min_new_token, room)
        )
        for it in items
    ]


class Passes:
    """The refine and code passes, and speaker samples, over loaded :class:`Models`."""

    def __init__(self, models: Models) -> None:
        self.m = models

    # ---- prompts ----------------------------------------------------------------------------

    @torch.inference_mode()
    def code_inputs(
        self, texts: list[str], params: Union[InferCodeParams, list[InferCodeParams]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings (B, T, H) and attention mask (B, T) of the code pass prompts.

        Each item gets its own speaker (``spk_emb``) and speaker sample (``spk_smp``).
        """
        m = self.m
        plist = params if isinstance(params, list) else [params] * len(texts)
        samples: dict[str, torch.Tensor] = {}
        for p in plist:
            if p.spk_smp and p.spk_smp not in samples:
                samples[p.spk_smp] = decode_sample(p.spk_smp, m.config.gpt.num_vq)
        codes = [samples[p.spk_smp] if p.spk_smp else None for p in plist]
        decorated = [
            code_prompt(t, p.prompt, p.txt_smp, p.spk_emb is not None)
            for t, p in zip(texts, plist, strict=True)
        ]
        batch = m.tokenizer.encode(decorated, m.config.gpt.num_vq, codes, m.device)
        embeds = m.embed(batch.input_ids, batch.text_mask)
        is_spk = batch.text_mask & (batch.input_ids[..., 0] == m.tokenizer.spk_emb_id)
        for i, p in enumerate(plist):
            if p.spk_emb is not None and bool(is_spk[i].any()):
                vec = speaker_embedding(decode_speaker(p.spk_emb, m.config.gpt.hidden_size))
                embeds[i, is_spk[i]] = vec.to(embeds.device, embeds.dtype)
        return embeds.to(m.engine.backend.dtype), batch.attention_mask

    def fit(self, items: list[ItemSampling], embeds: torch.Tensor, what: str) -> list[ItemSampling]:
        """:func:`fit_positions` for prompts ``embeds`` (B, T, H)."""
        positions = int(self.m.config.gpt.max_position_embeddings)
        return fit_positions(items, int(embeds.shape[1]), positions, what)

    # ---- passes -----------------------------------------------------------------------------

    def refine_inputs(self, texts: list[str], prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings (B, T, H) and attention mask (B, T) of the refine pass prompts."""
        m = self.m
        batch = m.tokenizer.encode(
            [refine_prompt(t, prompt) for t in texts], m.config.gpt.num_vq, None, m.device
        )
        embeds = m.embed(batch.input_ids, batch.text_mask).to(m.engine.backend.dtype)
        return embeds, batch.attention_mask

    def refined_texts(self, rows: list[list[int]]) -> list[str]:
        """The refine pass's drawn tokens (one list per item) as text: ids from ``[break_0]``
        on are dropped."""
        m = self.m
        return m.tokenizer.decode([[t for t in row if t < m.tokenizer.break_0_id] for row in rows])

    def refine(
        self,
        texts: list[str],
        params: RefineTextParams,
        interrupt: Optional[Interrupt] = None,
        progress: Optional[Callable[[int, int], None]] = None,
    ) -> list[str]:
        """Rewrite texts with prosody tokens (:meth:`refined_texts`)."""
        m = self.m
        embeds, mask = self.refine_inputs(texts, params.prompt)
        heads = m.engine.refine_heads(m.tokenizer.eos_refine_id)
        items = self.fit([item_sampling(params)] * len(texts), embeds, "refine")
        state = last(
            m.engine.steps(
                embeds,
                mask,
                heads,
                items,
                params.manual_seed,
                interrupt,
                progress,
                params.ensure_non_empty,
            )
        )
        rows = [
            state.item_tokens(i)[:, 0].tolist() if state is not None else []
            for i in range(len(texts))
        ]
        return self.refined_texts(rows)

    def code_steps(
        self,
        texts: list[str],
        params: Union[InferCodeParams, list[InferCodeParams]],
        interrupt: Optional[Interrupt] = None,
        progress: Optional[Callable[[int, int], None]] = None,
        per_item_seeds: bool = False,
        cancelled: Optional[list[Interrupt]] = None,
    ) -> Iterator[GenerationState]:
        """The code pass, yielding the state after every step.

        With one params object its ``manual_seed`` seeds the whole batch, as the reference
        does; with ``per_item_seeds`` (or a list of params) each item's ``manual_seed`` seeds
        only that item, so it draws what it would draw alone.
        """
        plist = params if isinstance(params, list) else [params] * len(texts)
        embeds, mask = self.code_inputs(texts, plist)
        per_item = per_item_seeds or isinstance(params, list)
        items = [item_sampling(p, p.manual_seed if per_item else None) for p in plist]
        items = self.fit(items, embeds, "code")
        batch_seed = None if per_item else plist[0].manual_seed
        return self.m.engine.steps(
            embeds,
            mask,
            self.m.engine.code_heads(),
            items,
            batch_seed,
            interrupt,
            progress,
            plist[0].ensure_non_empty,
            cancelled,
        )

    # ---- speaker samples -----------------------------------------------------------------

    def min_sample_length(self) -> int:
        """The fewest samples a speaker sample can have (the mel front end's reflect padding)."""
        return self.m.dvae.preprocessor_mel.mel_spec.n_fft // 2 + 1

    @torch.inference_mode()
    def sample_audio_speaker(self, wav: Union[np.ndarray, torch.Tensor]) -> str:
        """24 kHz mono waveform (N,) -> speaker sample string of its DVAE codes (num_vq, T)."""
        most = int(MAX_SAMPLE_SECONDS * self.m.config.sample_rate)
        x = torch.from_numpy(speaker_audio(wav, most))
        if x.dim() == 2 and x.shape[0] == 1:
            x = x[0]
        if x.dim() != 1:
            raise ValueError(f"expected a mono waveform of shape (N,), got {tuple(x.shape)}")
        need = self.min_sample_length()
        if x.numel() < need:
            raise ValueError(
                f"the speaker sample is too short: {x.numel()} samples, at least {need} needed"
            )
        codes = self.m.dvae.encode(x[None].to(self.m.device))[0]
        return encode_sample(codes)


def last(iterator: Iterator[GenerationState]) -> Optional[GenerationState]:
    """Exhaust a generation and return its final state (None if it ran no step)."""
    state = None
    for state in iterator:  # noqa: B007 - the loop's last value is the result
        pass
    return state
