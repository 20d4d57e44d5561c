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
import stat
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


#: Largest voices file or voice file read, in bytes (a 5-minute speaker sample is about
#: 100 KB; a speaker string about 2 KB).
MAX_VOICES_FILE_BYTES = 8 << 20


def read_text(path: str, limit: int = MAX_VOICES_FILE_BYTES) -> str:
    """The UTF-8 text of a regular file of at most ``limit`` bytes.

    The file is opened without blocking and checked to be a regular file before anything is
    read, so a FIFO, a device or a socket named like a voices file is refused at once.

    Raises:
        VoicesError: not a regular file, larger than ``limit``, or not UTF-8 (naming the file).
        OSError: the file cannot be opened.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise VoicesError(f"{path}: not a regular file")
        raw = f.read(limit + 1)
    if len(raw) > limit:
        raise VoicesError(f"{path}: larger than {limit} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise VoicesError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e


def _read_json(path: str) -> Any:
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise VoicesError(f"{path}: not valid JSON ({e})") from e
    except RecursionError as e:
        raise VoicesError(f"{path}: not valid JSON (nested too deeply)") from e


def _meta(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        return {}
    return {k: raw[k] for k in META_KEYS if raw.get(k) is not None}


def read_voice_file(path: str, name: str) -> tuple[Voice, dict[str, Any]]:
    """One ``NAME.json`` or ``NAME.txt`` file of a voices folder -> (its voice, its metadata).

    Raises:
        VoicesError: not a regular file, not UTF-8, bad JSON or a bad entry (naming the file).
        OSError: the file cannot be opened.
    """
    if path.endswith(".txt"):
        return _entry(name, read_text(path), path), {}
    raw = _read_json(path)
    return _entry(name, raw, path), _meta(raw)


def read_entries(path: Union[str, os.PathLike]) -> dict[str, tuple[Voice, dict[str, Any]]]:
    """Named voices of a JSON file or a folder, each with the metadata of its file.

    A JSON file is read whole: any bad entry is an error. In a folder, each ``NAME.json`` /
    ``NAME.txt`` is read on its own, and one that cannot be used (bad JSON, a bad entry, not
    UTF-8, not a regular file: a FIFO is never opened) is skipped with a warning that names it,
    so one bad file never hides the others.

    Raises:
        VoicesError: a missing path, or a bad voices file (a ``UsageError``, ``ValueError``).
        OSError: a voices file that cannot be read.
    """
    path = os.fspath(path)
    voices: dict[str, tuple[Voice, dict[str, Any]]] = {}
    if os.path.isdir(path):
        for entry in sorted(os.listdir(path)):
            name, suffix = os.path.splitext(entry)
            if suffix not in (".json", ".txt") or entry.startswith("."):
                continue
            full = os.path.join(path, entry)
            try:
                voices[name] = read_voice_file(full, name)
            except (VoicesError, OSError) as e:
                logger.warning("voice file %s skipped: %s", full, e)
    elif os.path.isfile(path):
        table = _read_json(path)
        if not isinstance(table, dict):
            raise VoicesError(f"{path}: a voices file must hold a JSON object (name -> voice)")
        for name, value in table.items():
            voices[name] = (_entry(name, value, path), {})
    elif os.path.lexists(path):
        raise VoicesError(f"{path}: not a voices file or folder")
    else:
        raise VoicesError(f"voices not found: {path} (a JSON file or a folder)")
    return voices


def read_voices(path: Union[str, os.PathLike]) -> dict[str, Voice]:
    """Named voices from a JSON file or a folder, as :class:`Voice` records.

    A JSON file maps names to a seed, a speaker string, or ``{"seed": N}`` / ``{"spk": "..."}``
    / ``{"smp": "...", "txt": "..."}`` (a speaker sample and its transcript). A folder holds
    ``NAME.json`` files (the same objects, as the voice library writes them, with metadata) and
    ``NAME.txt`` files (a speaker string); the name is the file name without its suffix; other
    files are ignored, and a bad file is skipped with a warning (:func:`read_entries`). Names
    keep the file's order (a folder: sorted).

    Raises:
        VoicesError: missing path, or a voices file with bad JSON or bad entries (a
            ``UsageError``, ``ValueError``).
        OSError: a file that cannot be read.
    """
    return {name: voice for name, (voice, _) in read_entries(path).items()}


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


__all__ = [
    "MAX_VOICES_FILE_BYTES",
    "META_KEYS",
    "VOICE_KEYS",
    "load_voices",
    "read_entries",
    "read_text",
    "read_voice_file",
    "read_voices",
]
