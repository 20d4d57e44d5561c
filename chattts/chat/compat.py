"""The reference's attributes on :class:`chattts.Chat`: ``coef``, ``device``, ``device_gpt``,
read-only views of the loaded modules, and voice names resolved in the params (docs/compat.md).

Scripts written for the reference reach one level into ``Chat``: ``chat.gpt``,
``chat.tokenizer``, ``chat.speaker``... These are the loaded modules of ``chat.models``
under the reference's names (None before ``load``); which of their methods match the
reference's is listed in docs/compat.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import torch

from ..pipeline.passes import code_prompt, refine_prompt
from ..voices import Voice, VoiceLibrary, VoiceResolver
from ..voices.speaker import decode_sample, encode_sample

if TYPE_CHECKING:
    from ..options import LoadOptions
    from ..pipeline import Pipeline
    from ..pipeline.models import Models


class SpeakerView:
    """The reference's ``chat.speaker``: speaker strings and prompt decoration.

    Args:
        pipeline: the loaded pipeline.
    """

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    def sample_random(self, seed: Optional[int] = None) -> str:
        """A random speaker string (drawn on the CPU; ``seed`` as ``sample_random_speaker``)."""
        return self._pipeline.random_speaker(seed)

    @staticmethod
    def decorate_code_prompts(
        text: list[str], prompt: str, txt_smp: Optional[str], spk_emb: Optional[str]
    ) -> list[str]:
        """The code pass inputs of ``text`` (a new list; the reference edits ``text`` too)."""
        return [code_prompt(t, prompt, txt_smp, spk_emb is not None) for t in text]

    @staticmethod
    def decorate_text_prompts(text: list[str], prompt: str) -> list[str]:
        """The refine pass inputs of ``text``."""
        return [refine_prompt(t, prompt) for t in text]

    @staticmethod
    def encode_prompt(prompt: torch.Tensor) -> str:
        """Codes (num_vq, T) -> speaker sample string (``spk_smp``)."""
        return encode_sample(prompt)

    def decode_prompt(self, prompt: str) -> torch.Tensor:
        """Speaker sample string -> codes (num_vq, T) int64."""
        return decode_sample(prompt, self._pipeline.models.config.gpt.num_vq)


def _module(name: str, doc: str) -> property:
    def get(self: ReferenceAttributes) -> Any:
        models = self.models
        return None if models is None else getattr(models, name)

    return property(get, doc=f"{doc} (read only; None before ``load``).")


class ReferenceAttributes:
    """The reference's attributes, as read-only properties over ``self.models``."""

    models: Optional[Models]
    options: Optional[LoadOptions]
    voices: VoiceLibrary
    _pipeline: Optional[Pipeline]
    #: (library, pipeline, resolver): the resolver of :meth:`voice_resolver` and what it is for.
    _resolver: Optional[tuple[VoiceLibrary, Optional[Pipeline], VoiceResolver]]

    tokenizer = _module("tokenizer", "The tokenizer (:class:`chattts.model.tokenizer.Tokenizer`)")
    gpt = _module("gpt", "The GPT body (:class:`chattts.model.gpt.GPT`)")
    embed = _module("embed", "Embeddings and heads (:class:`chattts.model.embed.Embed`)")
    decoder = _module("decoder", "The Decoder (hidden states -> mels)")
    vocos = _module("vocos", "The vocoder (mels -> 24 kHz audio)")
    dvae = _module("dvae", "The DVAE (loaded on first access)")

    @property
    def speaker(self) -> Optional[SpeakerView]:
        """Speaker strings and prompt decoration, as the reference's ``chat.speaker``."""
        return None if self._pipeline is None else SpeakerView(self._pipeline)

    @property
    def device(self) -> Optional[torch.device]:
        """The device of the loaded modules (None before ``load``)."""
        return None if self.models is None else self.models.device

    @property
    def device_gpt(self) -> Optional[torch.device]:
        """The GPT's device: always :attr:`device` (the reference's differs only with vLLM)."""
        return self.device

    @property
    def coef(self) -> Optional[str]:
        """The DVAE ``coef`` in use, as the string ``load(coef=...)`` takes (the checkpoint's,
        read from its file without loading the DVAE, unless ``load`` replaced it)."""
        if self.models is None:
            return None
        if self.options is not None and self.options.coef is not None:
            return self.options.coef
        from safetensors import safe_open

        from ..pipeline.models import encode_coef

        loader = self.models.dvae_loader
        if loader.coef is not None:
            return encode_coef(loader.coef)
        with safe_open(loader.path, framework="pt") as f:
            return encode_coef(f.get_tensor("coef"))

    # ---- voices -----------------------------------------------------------------------------

    def voice_resolver(self) -> VoiceResolver:
        """The :class:`~chattts.voices.VoiceResolver` over ``self.voices`` with this model's
        draw and sizes; kept while the library and the loaded model stay the same, so seed
        draws and mixes are made once."""
        pipeline = self._pipeline
        held = self._resolver
        if held is not None and held[0] is self.voices and held[1] is pipeline:
            return held[2]
        models = None if pipeline is None else pipeline.models
        resolver = VoiceResolver(
            self.voices,
            draw=None if pipeline is None else pipeline.random_speaker,
            hidden_size=None if models is None else models.config.gpt.hidden_size,
            num_vq=None if models is None else models.config.gpt.num_vq,
        )
        self._resolver = (self.voices, pipeline, resolver)
        return resolver

    def resolve_voice(self, spec: str) -> Voice:
        """A library voice name, ``seed_N`` or mix (``"alice"``, ``"alice*0.7+bob*0.3"``) ->
        its :class:`Voice`, seeds drawn with this model (:meth:`voice_resolver`).

        Raises:
            VoicesError: unknown names, malformed mixes, voices of another model size.
        """
        return self.voice_resolver().voice(spec)


__all__ = ["ReferenceAttributes", "SpeakerView"]
