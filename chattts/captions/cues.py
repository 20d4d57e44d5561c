"""Caption cues from timed segments, and the clause splitting that keeps segments cue-sized.

Subtitle habits: a cue holds at most 2 lines of at most 42 characters; cues are in order,
never overlap and lie inside the audio. Times are never invented here: one cue per segment,
with the segment's measured start and end. A sentence too long for one cue is split *before*
synthesis with :func:`caption_pieces`, so each piece becomes its own measured segment.

Lengths are display columns: a CJK (East Asian wide) character counts 2, so a line holds 42
Latin characters or 21 Chinese ones (a line of 42 columns is never more than 42 characters).
Line breaking: at spaces; CJK text (which has none) may break between any two characters,
but never before closing punctuation such as ``，`` or ``。``.
"""

from __future__ import annotations

import logging
import math
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Optional, Protocol

from ..errors import CaptionError, ParameterError

logger = logging.getLogger("chattts")

#: Columns per caption line (a wide CJK character takes 2), and lines per cue.
MAX_CHARS = 42
MAX_LINES = 2

_CJK = "\u2e80-\u2fdf\u3040-\u30ff\u3100-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
#: CJK punctuation that must stay at the end of the line before it.
_CLOSING = "，。、；：！？…）」』】》〉”’,.;:!?)]}"
# a token of line breaking: one CJK character with the closing punctuation after it, or a run
# of other non-space characters (with any closing punctuation it carries)
_TOKEN = re.compile(rf"[{_CJK}][{re.escape(_CLOSING)}]*|[^\s{_CJK}]+")


#: Columns of unevenness accepted to break a cue's lines after punctuation.
_PUNCT_BONUS = 8


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


def width(text: str) -> int:
    """Display columns of ``text``: 2 for East Asian wide and full-width characters, else 1."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _cut(text: str, columns: int) -> list[str]:
    """``text`` cut into parts of at most ``columns`` columns (at least one character each)."""
    parts, current = [], ""
    for ch in text:
        if current and width(current + ch) > columns:
            parts.append(current)
            current = ""
        current += ch
    return [*parts, current] if current else parts


def _tokens(text: str) -> list[tuple[str, bool]]:
    """(token, whether a space comes before it) over ``text``; spaces collapse."""
    out = []
    for m in _TOKEN.finditer(text):
        out.append((m.group(), m.start() > 0 and text[m.start() - 1].isspace()))
    return out


def _join(tokens: list[tuple[str, bool]]) -> str:
    return "".join((" " if sp and i else "") + t for i, (t, sp) in enumerate(tokens))


def _hard_split(tokens: list[tuple[str, bool]], columns: int) -> list[tuple[str, bool]]:
    """Tokens wider than ``columns`` (a long URL) cut into parts."""
    out = []
    for t, sp in tokens:
        out.extend((part, sp if i == 0 else False) for i, part in enumerate(_cut(t, columns)))
    return out


def _wrap(tokens: list[tuple[str, bool]], columns: int) -> list[list[tuple[str, bool]]]:
    """Greedy wrapping: as many tokens per line as fit in ``columns``."""
    lines: list[list[tuple[str, bool]]] = [[]]
    for tok in tokens:
        if lines[-1] and width(_join(lines[-1] + [tok])) > columns:
            lines.append([])
        lines[-1].append(tok)
    return lines if lines[0] else []


def layout(text: str, max_chars: int = MAX_CHARS, max_lines: int = MAX_LINES) -> list[str]:
    """Break ``text`` into lines of at most ``max_chars`` columns.

    One line when it fits; two lines of the most even widths when two are needed and allowed,
    preferring a break after punctuation;
    otherwise greedy lines, which may be more than ``max_lines`` (the caller decides).
    """
    tokens = _hard_split(_tokens(text), max_chars)
    if not tokens:
        return []
    if width(_join(tokens)) <= max_chars or max_lines < 2:
        return [_join(line) for line in _wrap(tokens, max_chars)]
    best: Optional[tuple[int, int]] = None  # (cost, break index)
    for k in range(1, len(tokens)):
        first, second = _join(tokens[:k]), _join(tokens[k:])
        if width(first) <= max_chars and width(second) <= max_chars:
            # the most even pair of lines, where a break after punctuation counts as even as
            # one up to _PUNCT_BONUS columns more even
            cost = max(width(first), width(second))
            cost -= _PUNCT_BONUS if first[-1] in _CLOSING else 0
            if best is None or cost < best[0]:
                best = (cost, k)
    if best is not None:
        return [_join(tokens[: best[1]]), _join(tokens[best[1] :])]
    return [_join(line) for line in _wrap(tokens, max_chars)]


def _units(text: str, pattern: re.Pattern[str]) -> list[str]:
    """``text`` cut after every match of ``pattern`` (the pieces concatenate to ``text``)."""
    cuts = [m.end() for m in pattern.finditer(text) if 0 < m.end() < len(text)]
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True) if a < b]


Fits = Callable[[str], bool]


def _pack(units: list[str], fits: Fits, limit: int, finer: list[re.Pattern[str]]) -> list[str]:
    """Greedy packing of consecutive units into pieces (stripped) that ``fits`` accepts; a
    unit that does not fit alone is cut with the next, finer pattern, and with none left
    into parts of ``limit`` columns."""
    pieces: list[str] = []
    current = ""
    for unit in units:
        if not fits(unit):
            if finer:
                if current.strip():
                    pieces.append(current.strip())
                sub = _balanced(_units(unit, finer[0]), fits, limit, finer[1:])
            else:  # a word too long for any piece: cut it, after what is already there
                sub = [part.strip() for part in _cut((current + unit).strip(), limit)]
            pieces.extend(sub[:-1])
            current = sub[-1] + (" " if unit[-1:].isspace() else "") if sub else ""
            continue
        if fits(current + unit):
            current += unit
        else:
            if current.strip():
                pieces.append(current.strip())
            current = unit
    if current.strip():
        pieces.append(current.strip())
    return pieces


def _balanced(units: list[str], fits: Fits, limit: int, finer: list[re.Pattern[str]]) -> list[str]:
    """:func:`_pack` into as few pieces as the greedy packing needs, but of even widths: the
    narrowest width that still gives that many pieces."""
    pieces = _pack(units, fits, limit, finer)
    size = width("".join(units).strip())
    for columns in range(max(-(-size // max(len(pieces), 1)), 2), limit):
        even = _pack(units, lambda t, c=columns: width(t.strip()) <= c and fits(t), limit, finer)
        if len(even) <= len(pieces):
            return even
    return pieces


# a clause ends after ASCII punctuation followed by a space (so "3.14" stays whole), or after
# CJK punctuation, with the spaces that follow
_CLAUSE_BREAK = re.compile(r"(?:[,;:.!?…—–]+(?=\s|$)|[、，；：。！？…—]+)\s*")
# a word ends after spaces, and CJK text between any two characters (not before punctuation)
_WORD_BREAK = re.compile(rf"\s+|[{_CJK}](?=[^\s{re.escape(_CLOSING)}])")


def caption_pieces(
    text: str, max_chars: int = MAX_CHARS * MAX_LINES, *, lines: int = 2
) -> list[str]:
    """Split a sentence into pieces that each fit one caption cue, to synthesise one by one so
    that each gets its own measured caption time.

    A piece fits when it is at most ``max_chars`` columns wide and lays out in ``lines`` lines
    of ``max_chars // lines`` columns (:func:`layout`; CJK characters count 2 columns).
    Clauses (ending in ``, ; : — 、 ， ； ：`` or sentence punctuation) are kept whole and
    joined while they fit; a clause still too long is split at spaces (CJK text between any
    two characters) into pieces of even widths, and a word too long for a piece is cut.
    Whitespace is collapsed; the pieces joined with single spaces (none between CJK) give
    back the text.
    """
    for name, value, low in (("max_chars", max_chars, 2), ("lines", lines, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ParameterError(f"{name} must be an integer ≥ {low}, not {value!r}")
    line = max(max_chars // lines, 1)

    def fits(piece: str) -> bool:
        piece = piece.strip()
        return width(piece) <= max_chars and len(layout(piece, line, lines)) <= lines

    text = " ".join(text.split())
    if not text:
        return []
    return _pack(_units(text, _CLAUSE_BREAK), fits, max_chars, [_WORD_BREAK])


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


__all__ = [
    "MAX_CHARS",
    "MAX_LINES",
    "Cue",
    "Timed",
    "caption_pieces",
    "cues",
    "layout",
    "width",
]
