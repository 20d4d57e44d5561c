"""Caption cues from timed segments, and the clause splitting that keeps segments cue-sized.

Subtitle habits: a cue holds at most 2 lines of at most 42 characters; cues are in order,
never overlap and lie inside the audio. Times are never invented here: one cue per segment,
with the segment's measured start and end. A sentence too long for one cue (over 84
characters) is split *before* synthesis with :func:`caption_pieces`, so each piece becomes its
own measured segment.

Line breaking: at spaces; CJK text (which has none) may break between any two characters,
but never before closing punctuation such as ``，`` or ``。``.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Optional, Protocol

from ..errors import CaptionError, ParameterError

logger = logging.getLogger("chattts")

#: Characters per caption line, and lines per cue.
MAX_CHARS = 42
MAX_LINES = 2

_CJK = "\u2e80-\u2fdf\u3040-\u30ff\u3100-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
#: CJK punctuation that must stay at the end of the line before it.
_CLOSING = "，。、；：！？…）」』】》〉”’,.;:!?)]}"
# a token of line breaking: one CJK character with the closing punctuation after it, or a run
# of other non-space characters (with any closing punctuation it carries)
_TOKEN = re.compile(rf"[{_CJK}][{re.escape(_CLOSING)}]*|[^\s{_CJK}]+")


class Timed(Protocol):
    """Anything with a start, an end (seconds) and a text: :class:`chattts.audio.Segment`."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Cue:
    """One caption: ``lines`` shown from ``start`` to ``end`` (seconds), spoken by ``voice``."""

    start: float
    end: float
    lines: tuple[str, ...]
    voice: Optional[str] = None

    @property
    def text(self) -> str:
        """The lines joined by newlines."""
        return "\n".join(self.lines)


def _tokens(text: str) -> list[tuple[str, bool]]:
    """(token, whether a space comes before it) over ``text``; spaces collapse."""
    out = []
    for m in _TOKEN.finditer(text):
        out.append((m.group(), m.start() > 0 and text[m.start() - 1].isspace()))
    return out


def _join(tokens: list[tuple[str, bool]]) -> str:
    return "".join((" " if sp and i else "") + t for i, (t, sp) in enumerate(tokens))


def _hard_split(tokens: list[tuple[str, bool]], width: int) -> list[tuple[str, bool]]:
    """Tokens longer than ``width`` (a long URL, a CJK run with punctuation) cut into parts."""
    out = []
    for t, sp in tokens:
        for i in range(0, len(t), width):
            out.append((t[i : i + width], sp if i == 0 else False))
    return out


def _wrap(tokens: list[tuple[str, bool]], width: int) -> list[list[tuple[str, bool]]]:
    """Greedy wrapping: as many tokens per line as fit in ``width`` characters."""
    lines: list[list[tuple[str, bool]]] = [[]]
    for tok in tokens:
        if lines[-1] and len(_join(lines[-1] + [tok])) > width:
            lines.append([])
        lines[-1].append(tok)
    return lines if lines[0] else []


def layout(text: str, max_chars: int = MAX_CHARS, max_lines: int = MAX_LINES) -> list[str]:
    """Break ``text`` into lines of at most ``max_chars`` characters.

    One line when it fits; two lines of the most even lengths when two are needed and allowed;
    otherwise greedy lines, which may be more than ``max_lines`` (the caller decides).
    """
    tokens = _hard_split(_tokens(text), max_chars)
    if not tokens:
        return []
    if len(_join(tokens)) <= max_chars or max_lines < 2:
        return [_join(line) for line in _wrap(tokens, max_chars)]
    best: Optional[tuple[int, int]] = None  # (longest line, break index)
    for k in range(1, len(tokens)):
        first, second = _join(tokens[:k]), _join(tokens[k:])
        if len(first) <= max_chars and len(second) <= max_chars:
            longest = max(len(first), len(second))
            if best is None or longest < best[0]:
                best = (longest, k)
    if best is not None:
        return [_join(tokens[: best[1]]), _join(tokens[best[1] :])]
    return [_join(line) for line in _wrap(tokens, max_chars)]


def _units(text: str, pattern: re.Pattern[str]) -> list[str]:
    """``text`` cut after every match of ``pattern`` (the pieces concatenate to ``text``)."""
    cuts = [m.end() for m in pattern.finditer(text) if 0 < m.end() < len(text)]
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True) if a < b]


def _pack(units: list[str], max_chars: int, finer: list[re.Pattern[str]]) -> list[str]:
    """Greedy packing of consecutive units into pieces of at most ``max_chars`` characters
    (stripped); a unit too long alone is cut with the next, finer pattern."""
    pieces: list[str] = []
    current = ""
    for unit in units:
        if len(unit.strip()) > max_chars:
            if current.strip():
                pieces.append(current.strip())
            current = ""
            if finer:
                sub = _balanced(_units(unit, finer[0]), max_chars, finer[1:])
            else:
                core = unit.strip()
                sub = [core[i : i + max_chars] for i in range(0, len(core), max_chars)]
            pieces.extend(sub[:-1])
            current = sub[-1] + (" " if unit[-1:].isspace() else "") if sub else ""
            continue
        if len((current + unit).strip()) <= max_chars:
            current += unit
        else:
            if current.strip():
                pieces.append(current.strip())
            current = unit
    if current.strip():
        pieces.append(current.strip())
    return pieces


def _balanced(units: list[str], max_chars: int, finer: list[re.Pattern[str]]) -> list[str]:
    """:func:`_pack` into as few pieces as the greedy packing needs, but of even lengths: the
    narrowest width that still gives that many pieces."""
    pieces = _pack(units, max_chars, finer)
    size = len("".join(units).strip())
    for width in range(max(-(-size // len(pieces)), 2), max_chars):
        even = _pack(units, width, finer)
        if len(even) <= len(pieces):
            return even
    return pieces


# a clause ends after ASCII punctuation followed by a space (so "3.14" stays whole), or after
# CJK punctuation, with the spaces that follow
_CLAUSE_BREAK = re.compile(r"(?:[,;:.!?…—–]+(?=\s|$)|[、，；：。！？…—]+)\s*")
# a word ends after spaces, and CJK text between any two characters (not before punctuation)
_WORD_BREAK = re.compile(rf"\s+|[{_CJK}](?=[^\s{re.escape(_CLOSING)}])")


def caption_pieces(text: str, max_chars: int = MAX_CHARS * MAX_LINES) -> list[str]:
    """Split a sentence into pieces of at most ``max_chars`` characters, to synthesise one by
    one so that each gets its own measured caption time.

    Clauses (ending in ``, ; : — 、 ， ； ：`` or sentence punctuation) are kept whole and
    joined while they fit; a clause still too long is split at spaces (CJK text between any
    two characters), and a word longer than ``max_chars`` is cut. Whitespace is collapsed;
    the pieces joined with single spaces (none between CJK) give back the text.
    """
    if not isinstance(max_chars, int) or isinstance(max_chars, bool) or max_chars < 2:
        raise ParameterError(f"max_chars must be an integer ≥ 2, not {max_chars!r}")
    text = " ".join(text.split())
    if len(text) <= max_chars:
        return [text] if text else []
    return _pack(_units(text, _CLAUSE_BREAK), max_chars, [_WORD_BREAK])


def cues(
    segments: Iterable[Timed],
    *,
    max_chars: int = MAX_CHARS,
    max_lines: int = MAX_LINES,
    duration: Optional[float] = None,
) -> list[Cue]:
    """One cue per segment with text, with the segment's own start and end.

    Args:
        segments: in time order, not overlapping (objects with ``start``, ``end``, ``text``
            and optionally ``voice``).
        max_chars, max_lines: the layout of a cue; a segment too long for it (not split by
            :func:`caption_pieces`) still gets one cue, with more lines, and a warning.
        duration: the audio's length in seconds: every cue must end inside it.

    Raises:
        CaptionError: segments out of order, overlapping or outside the audio.
    """
    out: list[Cue] = []
    last_end = 0.0
    for seg in segments:
        start, end = float(seg.start), float(seg.end)
        if not (math.isfinite(start) and math.isfinite(end) and 0 <= start <= end):
            raise CaptionError(f"a segment has bad times: {start!r}–{end!r} s")
        if start < last_end - 1e-9:
            raise CaptionError(
                f"segment at {start:.3f} s starts before the one before it ends ({last_end:.3f} s)"
            )
        if duration is not None and end > duration + 1e-9:
            raise CaptionError(f"segment ends at {end:.3f} s, after the audio ({duration:.3f} s)")
        last_end = end
        lines = layout(seg.text, max_chars, max_lines)
        if not lines or end <= start:
            continue
        if len(lines) > max_lines:
            logger.warning(
                "a caption of %d characters needs %d lines (split long sentences with "
                "caption_pieces before synthesis): %.40s...",
                len(seg.text),
                len(lines),
                seg.text,
            )
        out.append(Cue(start, end, tuple(lines), getattr(seg, "voice", None)))
    return out


__all__ = ["MAX_CHARS", "MAX_LINES", "Cue", "Timed", "caption_pieces", "cues", "layout"]
