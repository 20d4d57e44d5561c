"""Dialogue scripts: text with ``[S1]``/``[S2]``/... speaker tags, split into turns.

A script is text in which every turn starts with a speaker tag ``[Sn]`` (n = 1, 2, ...)::

    [S1] Did you hear that? (laughs) [S2] Hear what? [S1] Never mind.

Inside a turn:

- non-verbal cues in parentheses become the model's control tokens (:data:`CUES`):
  ``(laughs)`` -> ``[laugh]``, ``(pause)`` -> ``[uv_break]``, ``(long pause)`` -> ``[lbreak]``;
  any other parenthesised text is an unknown cue: it is dropped, with a :class:`ScriptWarning`;
- the model's own control tokens (``[laugh]``, ``[uv_break]``, ``[lbreak]``, ``[break_3]``,
  ``[oral_2]``, ``[speed_5]`` ...) are kept as written; other bracketed tags (``[music]``,
  ``[foo]``) are unknown: dropped, with a :class:`ScriptWarning`.

Text without any speaker tag is not a script (:func:`has_speaker_tags`).

Voices of the speakers: :class:`Voice` (a seed, a speaker string, or reference audio read by
:func:`load_prompt`), and :func:`as_voice` for the short forms a ``speakers`` mapping takes.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional, Union

import numpy as np

from .errors import ChatTTSError

#: A speaker tag: ``[S1]``, ``[S2]``, ... (case-insensitive).
SPEAKER_TAG = re.compile(r"\[\s*[sS](\d+)\s*\]")

#: Non-verbal cues (lower case, inner spaces collapsed) -> the control token they become.
CUES: dict[str, str] = {
    **dict.fromkeys(
        (
            "laugh",
            "laughs",
            "laughing",
            "laughter",
            "chuckle",
            "chuckles",
            "chuckling",
            "giggle",
            "giggles",
            "giggling",
        ),
        "[laugh]",
    ),
    **dict.fromkeys(
        ("pause", "short pause", "breath", "breathes", "inhales", "exhales"), "[uv_break]"
    ),
    **dict.fromkeys(("long pause", "silence"), "[lbreak]"),
}

#: Control tokens of the model that a turn may hold as written.
CONTROL_TOKEN = re.compile(
    r"\[(?:uv_break|v_break|lbreak|llbreak|laugh|laugh_[0-2]|break_[0-7]|oral_[0-9]|speed_[0-9])\]"
)

_KNOWN = "; ".join(
    " ".join(f"({c})" for c in CUES if CUES[c] == token) + f" -> {token}"
    for token in dict.fromkeys(CUES.values())
)
_CUE = re.compile(r"\(([^()]*)\)")
_BRACKETED = re.compile(r"\[[^\[\]]*\]")
_SPACES = re.compile(r"\s+")


class ScriptError(ChatTTSError, ValueError):
    """A dialogue script that cannot be spoken (empty, a turn without text, text before the
    first speaker tag)."""


class ScriptWarning(UserWarning):
    """Something in a script was dropped (an unknown cue or tag)."""


@dataclass(frozen=True)
class Turn:
    """One turn of a script: the speaker (``"S1"``) and what they say, cues already mapped."""

    speaker: str
    text: str


def has_speaker_tags(text: str) -> bool:
    """True when ``text`` holds at least one ``[Sn]`` speaker tag (it is a script)."""
    return SPEAKER_TAG.search(text) is not None


def speaker_key(key: object) -> str:
    """A speaker name as used in mappings: ``"S1"``, ``"[S1]"``, ``"s1"`` or ``1`` -> ``"S1"``."""
    if isinstance(key, int) and not isinstance(key, bool):
        if key < 1:
            raise ScriptError(f"speaker numbers start at 1, not {key}")
        return f"S{key}"
    if isinstance(key, str):
        m = re.fullmatch(r"\s*\[?\s*[sS](\d+)\s*\]?\s*", key)
        if m and int(m.group(1)) >= 1:
            return f"S{int(m.group(1))}"
    raise ScriptError(f"a speaker is named S1, S2, ... (or [S1], or 1), not {key!r}")


def strip_speaker_tags(text: str) -> str:
    """``text`` without its speaker tags (for a Dia-style transcript of an audio prompt)."""
    return _SPACES.sub(" ", SPEAKER_TAG.sub(" ", text)).strip()


def map_cues(text: str) -> str:
    """Map the non-verbal cues and tags of one turn (see the module docstring).

    Unknown cues and tags are dropped, each with a :class:`ScriptWarning`.
    """

    def cue(m: re.Match) -> str:
        name = _SPACES.sub(" ", m.group(1)).strip().lower()
        if name in CUES:
            return f" {CUES[name]} "
        warnings.warn(
            f"unknown cue {m.group(0)!r} dropped; known cues: {_KNOWN}", ScriptWarning, stacklevel=4
        )
        return " "

    def tag(m: re.Match) -> str:
        token = m.group(0)
        normal = token.lower().replace(" ", "")
        if CONTROL_TOKEN.fullmatch(normal):
            return f" {normal} "
        warnings.warn(f"unknown tag {token!r} dropped", ScriptWarning, stacklevel=4)
        return " "

    text = _BRACKETED.sub(tag, _CUE.sub(cue, text))
    return _SPACES.sub(" ", text).strip()


def parse_script(text: str) -> list[Turn]:
    """Split a script into turns, mapping cues (:func:`map_cues`).

    Raises:
        ScriptError: the script is empty or has no speaker tag, text comes before the first
            tag, or a turn has nothing to say (no text and no known cue).
    """
    if not isinstance(text, str):
        raise TypeError(f"a script must be a str, not {type(text).__name__}")
    if not text.strip():
        raise ScriptError("the script is empty")
    tags = list(SPEAKER_TAG.finditer(text))
    if not tags:
        raise ScriptError("the script has no speaker tag: start each turn with [S1], [S2], ...")
    head = text[: tags[0].start()].strip()
    if head:
        raise ScriptError(
            f"text before the first speaker tag: {head[:40]!r}; start the script with [S1]"
        )
    turns = []
    for k, m in enumerate(tags):
        end = tags[k + 1].start() if k + 1 < len(tags) else len(text)
        speaker = f"S{int(m.group(1))}"
        if speaker == "S0":
            raise ScriptError("speaker numbers start at 1: [S0] is not a speaker tag")
        said = map_cues(text[m.end() : end])
        if not said:
            raise ScriptError(f"turn {k + 1} ({m.group(0)}) has no text")
        turns.append(Turn(speaker, said))
    return turns


# ---- voices ----------------------------------------------------------------------------------

#: Shortest reference audio accepted, in seconds.
MIN_PROMPT_SECONDS = 0.1


@dataclass(frozen=True)
class Voice:
    """Who speaks: one of ``speaker``, ``audio`` (+ ``text``) or ``seed``.

    Args:
        seed: a voice drawn from this seed (the same as ``sample_random_speaker(seed)``).
        speaker: a speaker string (``spk_emb``), as from ``sample_random_speaker``.
        audio: reference speech to clone (``spk_smp``): a file path, the file's bytes, a
            waveform (n,) or (1, n) at 24 kHz (numpy or torch), or a ``(waveform, rate)`` tuple.
        text: the transcript of ``audio`` (``txt_smp``); ``[Sn]`` tags in it are removed.

    With ``speaker`` and ``audio`` both, both condition the model; ``seed`` then picks nothing.
    With none of the three, a random voice.
    """

    seed: Optional[int] = None
    speaker: Any = None
    audio: Any = None
    text: Optional[str] = None

    @property
    def chosen(self) -> bool:
        """True when a speaker string or reference audio is given."""
        return self.speaker is not None or self.audio is not None


VoiceLike = Union[Voice, int, str, Mapping[str, Any], Any, None]


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


def load_prompt(audio: Any, sample_rate: int = 24000) -> np.ndarray:
    """Reference speech -> mono float32 (n,) at ``sample_rate``.

    ``audio``: a path, bytes or binary file (any format FFmpeg reads, resampled), a waveform
    (n,) or (1, n) taken to be at ``sample_rate``, or a ``(waveform, rate)`` tuple.

    Raises:
        chattts.audio.AudioFileNotFoundError: no such file; chattts.audio.AudioError: not
        audio, not mono, or shorter than :data:`MIN_PROMPT_SECONDS`.
    """
    from .audio import AudioError, as_mono, load_audio, resample

    try:
        if isinstance(audio, tuple):
            if len(audio) != 2:
                raise AudioError("an audio prompt tuple is (waveform, sample_rate)")
            wav = resample(as_mono(audio[0]), audio[1], sample_rate)
        elif isinstance(audio, (str, os.PathLike, bytes, bytearray)) or hasattr(audio, "read"):
            wav = load_audio(audio, sample_rate)
        else:
            wav = as_mono(audio)
    except AudioError as e:
        raise type(e)(f"audio prompt: {e}") from e
    if wav.size < MIN_PROMPT_SECONDS * sample_rate:
        raise AudioError(
            f"audio prompt: {wav.size / sample_rate:.3f} s is too short; give at least "
            f"{MIN_PROMPT_SECONDS} s (ideally 5 to 10 s) of speech"
        )
    return wav


__all__ = [
    "CUES",
    "MIN_PROMPT_SECONDS",
    "SPEAKER_TAG",
    "ScriptError",
    "ScriptWarning",
    "Turn",
    "Voice",
    "VoiceLike",
    "as_voice",
    "has_speaker_tags",
    "load_prompt",
    "map_cues",
    "parse_script",
    "speaker_key",
    "strip_speaker_tags",
]
