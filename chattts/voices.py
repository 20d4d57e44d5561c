"""Voices: who speaks, the voices files that name them, the voice library and voice mixes.

:class:`Voice` is the one voice type of the package: a seed, a speaker string, reference audio
(with its transcript), a speaker sample string, or the name of a library voice or mix.
:func:`as_voice` turns the short forms that a ``speakers`` mapping or a voices file takes into
one.

A voices file (docs/cli.md, "Voices") is a JSON file or a folder that names voices; the CLI,
the server and the web UI read it with :func:`load_voices` (name -> seed or speaker string);
:func:`read_voices` gives the same entries as :class:`Voice` records.

The voice library (:mod:`chattts.voicelib`: :class:`~chattts.voicelib.VoiceLibrary`, mixes
such as ``"alice*0.7+bob*0.3"``) is a folder of the same ``NAME.json`` files, with metadata.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Union

import numpy as np

from .errors import VoicesError

logger = logging.getLogger("chattts")

if TYPE_CHECKING:
    import torch

    from .audio import AudioLike, Waveform

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
            resolved by :meth:`chattts.voicelib.VoiceLibrary.resolve` where it is used.

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
    malformed mix such as ``a+``, which :func:`chattts.voicelib.parse_mix` then rejects)."""
    text = text.strip()
    if not text or not text.isascii():
        return False
    if "+" in text or "*" in text:
        return all(c.isalnum() or c in "_-+*. eE" for c in text)
    return NAME_PATTERN.fullmatch(text) is not None


# ---- voices files ------------------------------------------------------------------------------


#: The keys of a voices-file object: the voice (``seed``, ``spk``, ``smp`` + ``txt``) and the
#: library's metadata (kept by :mod:`chattts.voicelib`, ignored by the readers here).
VOICE_KEYS = ("seed", "spk", "smp", "txt")
META_KEYS = ("from_seed", "lang", "gender", "notes")


def _entry(name: str, value: Any, where: str) -> Voice:
    """One voices-file entry -> :class:`Voice` (a seed, a speaker string or a sample)."""
    if isinstance(value, dict):
        if isinstance(value.get("smp"), str) and value["smp"] and "seed" not in value:
            txt, spk = value.get("txt"), value.get("spk")
            if any(v is not None and not isinstance(v, str) for v in (txt, spk)):
                raise VoicesError(f"{where}: voice {name!r}: 'txt' and 'spk' must be strings")
            return Voice(speaker=spk.strip() if spk else None, sample=value["smp"], text=txt)
        keys = {"seed", "spk"} & value.keys()
        if len(keys) != 1:
            raise VoicesError(
                f"{where}: voice {name!r} needs exactly one of 'seed' or 'spk' (or an 'smp')"
            )
        value = value[keys.pop()]
    if isinstance(value, bool) or not isinstance(value, (int, str)) or value == "":
        raise VoicesError(f"{where}: voice {name!r} must be a seed (integer) or a speaker string")
    return Voice(speaker=value.strip()) if isinstance(value, str) else Voice(seed=value)


def _read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise VoicesError(f"{path}: not valid JSON ({e})") from e


def read_voices(path: Union[str, os.PathLike]) -> dict[str, Voice]:
    """Named voices from a JSON file or a folder, as :class:`Voice` records.

    A JSON file maps names to a seed, a speaker string, or ``{"seed": N}`` / ``{"spk": "..."}``
    / ``{"smp": "...", "txt": "..."}`` (a speaker sample and its transcript). A folder holds
    ``NAME.json`` files (the same objects, as the voice library writes them, with metadata) and
    ``NAME.txt`` files (a speaker string); the name is the file name without its suffix; other
    files are ignored. Names keep the file's order (a folder: sorted).

    Raises:
        VoicesError: missing path, bad JSON or bad entries (a ``UsageError``, ``ValueError``).
        OSError: a file that cannot be read.
    """
    path = os.fspath(path)
    voices: dict[str, Voice] = {}
    if os.path.isfile(path):
        table = _read_json(path)
        if not isinstance(table, dict):
            raise VoicesError(f"{path}: a voices file must hold a JSON object (name -> voice)")
        for name, value in table.items():
            voices[name] = _entry(name, value, path)
    elif os.path.isdir(path):
        for entry in sorted(os.listdir(path)):
            name, suffix = os.path.splitext(entry)
            full = os.path.join(path, entry)
            if suffix == ".json":
                voices[name] = _entry(name, _read_json(full), full)
            elif suffix == ".txt":
                with open(full, encoding="utf-8") as f:
                    voices[name] = _entry(name, f.read(), full)
    else:
        raise VoicesError(f"voices not found: {path} (a JSON file or a folder)")
    return voices


def load_voices(path: Union[str, os.PathLike]) -> dict[str, VoiceSpec]:
    """Named voices from a JSON file or a folder: name -> seed (int) or speaker string (str).

    The format is :func:`read_voices`'s (docs/cli.md, "Voices"). Voices made from a recording
    (a speaker sample, no speaker string) have no such form: they are left out, with a warning
    (the library's resolver, :mod:`chattts.voicelib`, uses them).

    Raises:
        VoicesError: missing path, bad JSON or bad entries (a ``UsageError``, ``ValueError``).
    """
    out: dict[str, VoiceSpec] = {}
    for name, voice in read_voices(path).items():
        if voice.sample is not None and not isinstance(voice.speaker, str):
            logger.warning("voice %r is a speaker sample: not usable as a seed or speaker", name)
            continue
        out[name] = voice.spec() if voice.sample is None else voice.speaker
    return out


__all__ = [
    "NAME_PATTERN",
    "Voice",
    "VoiceLike",
    "VoiceSpec",
    "as_voice",
    "load_voices",
    "looks_like_voice_name",
    "read_voices",
]
