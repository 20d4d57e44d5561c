"""Voices: who speaks, and the voices files that name them.

:class:`Voice` is the one voice type of the package: a seed, a speaker string, or reference
audio (with its transcript). :func:`as_voice` turns the short forms that a ``speakers`` mapping
or a voices file takes into one.

A voices file (docs/cli.md, "Voices") is a JSON file or a folder that names voices; the CLI,
the server and the web UI read it with :func:`load_voices` (name -> seed or speaker string);
:func:`read_voices` gives the same entries as :class:`Voice` records.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Union

import numpy as np

from .errors import VoicesError

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
        text: the transcript of ``audio`` (``txt_smp``); ``[Sn]`` tags in it are removed.

    With ``speaker`` and ``audio`` both, both condition the model; ``seed`` then picks nothing.
    With none of the three, a random voice.
    """

    seed: Optional[int] = None
    speaker: Union[None, str, torch.Tensor] = None
    audio: Union[None, AudioLike, tuple[Waveform, int]] = None
    text: Optional[str] = None

    @property
    def chosen(self) -> bool:
        """True when a speaker string or reference audio is given."""
        return self.speaker is not None or self.audio is not None

    def spec(self) -> VoiceSpec:
        """The voice as a voices file writes it: its speaker string, else its seed.

        Raises:
            VoicesError: reference audio, a speaker tensor, or no voice at all.
        """
        if isinstance(self.speaker, str) and self.audio is None:
            return self.speaker
        if self.seed is not None and not self.chosen:
            return self.seed
        raise VoicesError("only a seed or a speaker string can be written as a voices entry")


#: What a ``speakers`` mapping value may be (see :func:`as_voice`).
VoiceLike = Union[Voice, int, str, Mapping[str, Any], "AudioLike", "tuple[Waveform, int]", None]


def as_voice(value: VoiceLike) -> Voice:
    """A ``speakers`` mapping value -> :class:`Voice`.

    ``int``: a seed; ``str``: a path (an existing file, or any ASCII string) to reference audio,
    otherwise a speaker string (speaker strings are not ASCII); ``dict``: the fields of
    :class:`Voice`; bytes, ``os.PathLike``, arrays, tensors and ``(waveform, rate)``: audio.
    """
    if value is None or isinstance(value, Voice):
        return value or Voice()
    if isinstance(value, bool):
        raise TypeError("a voice cannot be a bool")
    if isinstance(value, (int, np.integer)):
        return Voice(seed=int(value))
    if isinstance(value, str):
        return (
            Voice(audio=value) if os.path.exists(value) or value.isascii() else Voice(speaker=value)
        )
    if isinstance(value, Mapping):
        unknown = set(value) - {"seed", "speaker", "audio", "text"}
        if unknown:
            raise TypeError(f"a voice dict takes seed, speaker, audio, text; not {sorted(unknown)}")
        return Voice(**value)
    return Voice(audio=value)


# ---- voices files ------------------------------------------------------------------------------


def _entry(name: str, value: Any, where: str) -> Voice:
    """One voices-file entry -> :class:`Voice` (a seed or a speaker string)."""
    if isinstance(value, dict):
        keys = {"seed", "spk"} & value.keys()
        if len(keys) != 1:
            raise VoicesError(f"{where}: voice {name!r} needs exactly one of 'seed' or 'spk'")
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

    A JSON file maps names to a seed, a speaker string, or ``{"seed": N}`` / ``{"spk": "..."}``.
    A folder holds ``NAME.json`` files (``{"seed": N}`` or ``{"spk": "..."}``) and ``NAME.txt``
    files (a speaker string); the name is the file name without its suffix; other files are
    ignored. Names keep the file's order (a folder: sorted).

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

    The format is :func:`read_voices`'s (docs/cli.md, "Voices").

    Raises:
        VoicesError: missing path, bad JSON or bad entries (a ``UsageError``, ``ValueError``).
    """
    return {name: voice.spec() for name, voice in read_voices(path).items()}


__all__ = ["Voice", "VoiceLike", "VoiceSpec", "as_voice", "load_voices", "read_voices"]
