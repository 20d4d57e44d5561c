"""The voices of the Dia-style calls (:mod:`chattts.dia`) as ``InferCodeParams`` fields."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Optional

from ..errors import VoicesError
from ..pipeline import Pipeline
from ..voices import looks_like_voice_name
from .script import Voice, load_prompt, strip_speaker_tags


class VoiceFields:
    """Resolves voices to ``InferCodeParams`` fields; each reference audio is encoded once,
    each library voice or mix resolved once."""

    def __init__(self, pipeline: Pipeline, resolve: Optional[Callable[[str], Voice]]) -> None:
        self.pipeline = pipeline
        self.resolve = resolve
        self._samples: dict[Any, str] = {}
        self._named: dict[str, Voice] = {}

    def _library(self, voice: Voice) -> Voice:
        """``voice`` with a library name or mix (``name``, or an ASCII ``speaker``) resolved."""
        name = voice.name
        if name is None and isinstance(voice.speaker, str) and looks_like_voice_name(voice.speaker):
            name = voice.speaker
        if name is None:
            return voice
        if self.resolve is None:
            raise VoicesError(f"voice {name!r}: no voice library to look it up in")
        if name not in self._named:
            self._named[name] = self.resolve(name)
        found = self._named[name]
        return Voice(
            seed=voice.seed if found.seed is None else found.seed,
            speaker=found.speaker,
            audio=voice.audio,
            text=voice.text if found.sample is None else found.text,
            sample=found.sample,
        )

    def fields(self, voice: Voice) -> dict[str, Any]:
        from ..voices.speaker import decode_speaker

        voice = self._library(voice)
        out: dict[str, Any] = {}
        if voice.speaker is not None:
            decode_speaker(voice.speaker, self.pipeline.models.config.gpt.hidden_size)  # early
            out["spk_emb"] = voice.speaker
        if voice.audio is not None:
            out["spk_smp"] = self._sample(voice.audio)
            out["txt_smp"] = strip_speaker_tags(voice.text) if voice.text else None
        elif voice.sample is not None:
            out["spk_smp"] = voice.sample
            out["txt_smp"] = strip_speaker_tags(voice.text) if voice.text else None
        elif voice.text is not None:
            raise ValueError("a transcript (audio_prompt_text) needs its audio prompt")
        if not out:
            out["spk_emb"] = self.pipeline.random_speaker(voice.seed)
        return out

    def _sample(self, audio: Any) -> str:
        key = audio if isinstance(audio, (str, bytes, os.PathLike)) else id(audio)
        if key not in self._samples:
            wav = load_prompt(audio, self.pipeline.sample_rate)
            self._samples[key] = self.pipeline.passes.sample_audio_speaker(wav)
        return self._samples[key]


__all__ = ["VoiceFields"]
