"""``Chat``, the facade users know from the reference (:mod:`.facade`), with the reference's
attributes (:mod:`.compat`) and finished speech (:mod:`.speech`: ``speak``, ``speak_stream``)."""

from __future__ import annotations

from ..pipeline import trim_silence
from ..voices import VoiceLibrary
from ..voices.speaker import decode_speaker
from .facade import Chat

__all__ = ["Chat", "VoiceLibrary", "decode_speaker", "trim_silence"]
