"""Who speaks: :class:`Voice`, the one voice type of the package.

A voice is a seed, a speaker string, reference audio (with its transcript), a speaker sample
string, or the name of a library voice or mix. :func:`as_voice` turns the short forms that a
``speakers`` mapping or a voices file takes into one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Union

import numpy as np

from ..errors import VoicesError

if TYPE_CHECKING:
    import torch

    from ..audio import AudioLike, Waveform

#: A voice as a voices file and the server's table hold it: a seed (int) or a speaker string.
VoiceSpec = Union[int, str]


@dataclass(frozen=True)
class Voice:
    """Who speaks: one of ``speaker``, ``audio`` (+ ``text``) or ``seed``.

    Args:
        seed: a voice drawn from this seed (the same as ``sample_random_speaker(seed)``).
        speaker: a speaker string (``spk_emb``), as from ``sample_random_speaker``, or the
            (H,) float tensor it decodes to.
        audio: reference speech to clone (``spk_smp``): a file path, the file's bytes, a
            waveform (n,) or (1, n) at 24 kHz (numpy or torch), or a ``(waveform, rate)`` tuple.
        text: the transcript of ``audio`` or ``sample`` (``txt_smp``); ``[Sn]`` tags in it
            are removed.
        sample: a speaker sample string (``spk_smp``, from ``sample_audio_speaker``): reference
            audio already encoded, as a library voice made from a recording holds it.
        name: a library voice or a mix of them (``"alice"``, ``"alice*0.7+bob*0.3"``),
            resolved by :meth:`chattts.voices.VoiceLibrary.resolve` where it is used.

    With ``speaker`` and ``audio`` (or ``sample``) both, both condition the model; ``seed`` then
    picks nothing. With none of them, a random voice.
    """

    seed: Optional[int] = None
    speaker: Union[None, str, torch.Tensor] = None
    audio: Union[None, AudioLike, tuple[Waveform, int]] = None
    text: Optional[str] = None
    sample: Optional[str] = None
    name: Optional[str] = None

    @property
    def chosen(self) -> bool:
        """True when a speaker string, reference audio, a sample or a voice name is given."""
        return any(v is not None for v in (self.speaker, self.audio, self.sample, self.name))

    def spec(self) -> VoiceSpec:
        """The voice as a voices file writes it: its speaker string, else its seed.

        Raises:
            VoicesError: reference audio, a speaker tensor, or no voice at all.
        """
        if isinstance(self.speaker, str) and self.audio is None and self.sample is None:
            return self.speaker
        if self.seed is not None and not self.chosen:
            return self.seed
        raise VoicesError("only a seed or a speaker string can be written as a voices entry")


#: What a ``speakers`` mapping value may be (see :func:`as_voice`).
VoiceLike = Union[Voice, int, str, Mapping[str, Any], "AudioLike", "tuple[Waveform, int]", None]


def as_voice(value: VoiceLike) -> Voice:
    """A ``speakers`` mapping value -> :class:`Voice`.

    ``int``: a seed; ``str``: an existing file is reference audio, a voice name or mix
    (letters, digits, ``_``, ``-``, ``*`` weights and ``+``: ``"alice*0.7+bob*0.3"``) is a
    library voice, any other ASCII string a path to reference audio, otherwise a speaker string
    (speaker strings are not ASCII); ``dict``: the fields of :class:`Voice`; bytes,
    ``os.PathLike``, arrays, tensors and ``(waveform, rate)``: audio.
    """
    if value is None or isinstance(value, Voice):
        return value or Voice()
    if isinstance(value, bool):
        raise TypeError("a voice cannot be a bool")
    if isinstance(value, (int, np.integer)):
        return Voice(seed=int(value))
    if isinstance(value, str):
        if os.path.exists(value):
            return Voice(audio=value)
        if looks_like_voice_name(value):
            return Voice(name=value.strip())
        return Voice(audio=value) if value.isascii() else Voice(speaker=value)
    if isinstance(value, Mapping):
        unknown = set(value) - {"seed", "speaker", "audio", "text", "sample", "name"}
        if unknown:
            raise TypeError(
                "a voice dict takes seed, speaker, audio, text, sample, name; "
                f"not {sorted(unknown)}"
            )
        return Voice(**value)
    return Voice(audio=value)


#: A voice name: letters, digits, ``_`` and ``-`` (no dot, so ``ref.wav`` stays a path).
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def looks_like_voice_name(text: str) -> bool:
    """True for a voice name or a mix of names (``alice``, ``a+b``, ``a*0.7+b*0.3``, or a
    malformed mix such as ``a+``, which :func:`chattts.voices.parse_mix` then rejects)."""
    text = text.strip()
    if not text or not text.isascii():
        return False
    if "+" in text or "*" in text:
        return all(c.isalnum() or c in "_-+*. eE" for c in text)
    return NAME_PATTERN.fullmatch(text) is not None


__all__ = [
    "NAME_PATTERN",
    "Voice",
    "VoiceLike",
    "VoiceSpec",
    "as_voice",
    "looks_like_voice_name",
]
