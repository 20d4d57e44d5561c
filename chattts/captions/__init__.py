"""Captions: cues laid out from measured segments, and SRT / WebVTT / JSON files.

- :mod:`.cues`: :func:`caption_pieces` (split a long sentence at clauses before synthesis),
  :func:`cues` (one cue per segment, 2 lines of 42 characters), :class:`Cue`;
- :mod:`.writers`: :func:`write_captions`, :func:`captions_text`, :func:`read_captions`,
  :func:`parse_captions`.

This package knows nothing of audio: segments are anything with ``start``, ``end`` and ``text``
(:class:`chattts.audio.Segment`). See docs/captions.md.
"""

from __future__ import annotations

from .cues import MAX_CHARS, MAX_LINES, Cue, Timed, caption_pieces, cues, layout
from .writers import (
    FORMATS,
    MEDIA_TYPES,
    SUFFIXES,
    caption_format,
    captions_text,
    parse_captions,
    read_captions,
    write_captions,
)

__all__ = [
    "FORMATS",
    "MAX_CHARS",
    "MAX_LINES",
    "MEDIA_TYPES",
    "SUFFIXES",
    "Cue",
    "Timed",
    "caption_format",
    "caption_pieces",
    "captions_text",
    "cues",
    "layout",
    "parse_captions",
    "read_captions",
    "write_captions",
]
