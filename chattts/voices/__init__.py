"""Voices: who speaks, the files and library that name voices, and mixes of them.

- :mod:`.voice`: :class:`Voice`, the one voice type, and :func:`as_voice` for short forms;
- :mod:`.files`: voices files and folders (:func:`read_voices`, :func:`load_voices`);
- :mod:`.library`: the voice library (:class:`VoiceLibrary`, ``chattts voice``);
- :mod:`.mix`: the one mix grammar (``"alice*0.7+bob*0.3"``), bounded;
- :mod:`.resolve`: :class:`VoiceResolver`, the one way from a voice spec to the
  ``InferCodeParams`` fields (names, ``seed_N``, mixes, speaker strings, samples);
- :mod:`.speaker`: speaker strings and speaker samples (torch; imported on first use).

See docs/compat.md ("Voices") and docs/cli.md ("Voice library").
"""

from __future__ import annotations

from .files import META_KEYS, VOICE_KEYS, load_voices, read_voices
from .library import Draw, VoiceLibrary, VoiceRecord, default_voices_dir, is_voice_reference
from .mix import MAX_MIX_TERMS, MAX_VOICE_CHARS, is_mix, mix_speakers, parse_mix
from .resolve import SEED_VOICE, MappingTable, VoiceResolver, VoiceTable
from .voice import NAME_PATTERN, Voice, VoiceLike, VoiceSpec, as_voice, looks_like_voice_name

__all__ = [
    "MAX_MIX_TERMS",
    "MAX_VOICE_CHARS",
    "META_KEYS",
    "NAME_PATTERN",
    "SEED_VOICE",
    "VOICE_KEYS",
    "Draw",
    "MappingTable",
    "Voice",
    "VoiceLibrary",
    "VoiceLike",
    "VoiceRecord",
    "VoiceResolver",
    "VoiceSpec",
    "VoiceTable",
    "as_voice",
    "default_voices_dir",
    "is_mix",
    "is_voice_reference",
    "load_voices",
    "looks_like_voice_name",
    "mix_speakers",
    "parse_mix",
    "read_voices",
]
