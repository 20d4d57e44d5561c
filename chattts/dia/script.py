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

Voices of the speakers: :class:`chattts.voices.Voice` (a seed, a speaker string, or reference
audio read by :func:`load_prompt`), and :func:`chattts.voices.as_voice` for the short forms a
``speakers`` mapping takes (both importable from here too).
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

import numpy as np

from ..errors import AudioError, ScriptError, ScriptWarning
from ..text.chars import CONTROL_TOKEN
from ..validation import MAX_SAMPLE_SECONDS
from ..voices import Voice, VoiceLike, as_voice

if TYPE_CHECKING:
    from ..audio import AudioLike, Waveform

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


_KNOWN = "; ".join(
    " ".join(f"({c})" for c in CUES if CUES[c] == token) + f" -> {token}"
    for token in dict.fromkeys(CUES.values())
)
_CUE = re.compile(r"\(([^()]*)\)")
_BRACKETED = re.compile(r"\[[^\[\]]*\]")
_SPACES = re.compile(r"\s+")


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


# ---- reference audio ---------------------------------------------------------------------

#: Shortest reference audio accepted, in seconds.
MIN_PROMPT_SECONDS = 0.1


def load_prompt(
    audio: Union[AudioLike, tuple[Waveform, int]], sample_rate: int = 24000
) -> np.ndarray:
    """Reference speech -> mono float32 (n,) at ``sample_rate``.

    ``audio``: a path, bytes or binary file (any format FFmpeg reads, resampled), a waveform
    (n,) or (1, n) taken to be at ``sample_rate``, or a ``(waveform, rate)`` tuple.

    Raises:
        chattts.audio.AudioFileNotFoundError: no such file; chattts.audio.AudioError: not
        audio, not mono, or shorter than :data:`MIN_PROMPT_SECONDS`.
    """
    from ..audio import as_mono, load_audio, resample

    try:
        if isinstance(audio, tuple):
            if len(audio) != 2:
                raise AudioError("an audio prompt tuple is (waveform, sample_rate)")
            wav = resample(as_mono(audio[0]), audio[1], sample_rate)
        elif isinstance(audio, (str, os.PathLike, bytes, bytearray)) or hasattr(audio, "read"):
            wav = load_audio(audio, sample_rate, max_seconds=MAX_SAMPLE_SECONDS)
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
