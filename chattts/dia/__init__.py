"""Dia-style API on :class:`chattts.Chat`: ``from_pretrained``, ``generate``,
``generate_batch``, ``save_audio`` (:mod:`.api`), and dialogue scripts with ``[S1]``/``[S2]``
speaker tags (:mod:`.script`). See docs/dia.md."""

from __future__ import annotations

from ..errors import UnsupportedOptionError
from .api import Dia, pretrained_options
from .script import (
    MIN_PROMPT_SECONDS,
    Turn,
    Voice,
    VoiceLike,
    as_voice,
    has_speaker_tags,
    load_prompt,
    parse_script,
)

__all__ = [
    "MIN_PROMPT_SECONDS",
    "Dia",
    "Turn",
    "UnsupportedOptionError",
    "Voice",
    "VoiceLike",
    "as_voice",
    "has_speaker_tags",
    "load_prompt",
    "parse_script",
    "pretrained_options",
]
