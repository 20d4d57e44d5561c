"""Voices files: a JSON file or a folder that names voices (docs/cli.md, "Voices").

The CLI, the server and the web UI read it with :func:`load_voices` (name -> seed or speaker
string); :func:`read_voices` gives the same entries as :class:`~chattts.voices.voice.Voice`
records. The voice library (:mod:`chattts.voices.library`) is a folder of the same
``NAME.json`` files, with metadata.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Union

from ..errors import VoicesError
from .voice import Voice, VoiceSpec

logger = logging.getLogger("chattts")


#: The keys of a voices-file object: the voice (``seed``, ``spk``, ``smp`` + ``txt``) and the
#: library's metadata (kept by :mod:`chattts.voices.library`, ignored by the readers here).
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
    (the library's resolver, :mod:`chattts.voices.library`, uses them).

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


__all__ = ["META_KEYS", "VOICE_KEYS", "load_voices", "read_voices"]
