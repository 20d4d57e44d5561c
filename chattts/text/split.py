"""Sentence splitting of ``infer``'s str input, and a length limit.

See docs/architecture.md, "One request".

:func:`split_sentences` is the reference rule. :func:`split_text` applies it, then cuts any
piece longer than a limit at its last sentence or clause boundary, so that no piece runs into
the generation limits (``max_new_token``: 384 refine tokens, 2048 audio steps ≈ 44 s).
"""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"(?<=。)|(?<=\. )")
_ATOM = re.compile(r"\[[\w_]+\]|.", re.S)

#: Default limit of :func:`split_text`, in characters (a ``[...]`` tag counts as one).
#: About 25 s of Chinese speech, well below the 2048-step audio limit; 8 to 10 s of English.
DEFAULT_MAX_SPLIT_CHARS = 120

# Boundaries, best first: sentence ends, then clause ends, then spaces. ASCII punctuation only
# counts when followed by a space, the end of the text or a non-ASCII character, so that
# "3.5", "1,000" and "10:30" are never cut.
_FULLWIDTH_RANK = {"。": 0, "！": 0, "？": 0, "；": 0, "…": 0, "，": 1, "、": 1, "：": 1}
_ASCII_RANK = {".": 0, "!": 0, "?": 0, ";": 0, ",": 1, ":": 1}
_SPACE_RANK = 2


def split_sentences(text: str) -> list[str]:
    """The reference rule: on newlines when there are any, else after ``。`` and ``". "``.

    Empty parts are dropped; the separators stay with the sentence before them.
    """
    parts = text.split("\n") if "\n" in text else _SENTENCE_END.split(text)
    return [p for p in parts if p.strip()]


def split_text(text: str, max_chars: int = DEFAULT_MAX_SPLIT_CHARS) -> list[str]:
    """:func:`split_sentences`, then every piece longer than ``max_chars`` cut further.

    A long piece is cut at the last boundary before the limit: a sentence end
    (``。！？；.!?;``) if one lies in the second half of the window, else a clause boundary
    (``，、：,:``), else a space, else any of them, else hard at the limit. A cut is never made
    inside a ``[...]`` tag (a tag counts as one character), and the spaces after a cut stay
    with the piece before it. So every piece holds at most ``max_chars`` characters besides
    its leading and trailing spaces, and the pieces of one sentence joined give the sentence back.

    Raises:
        ValueError: ``max_chars`` < 1.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, not {max_chars}")
    out: list[str] = []
    for sentence in split_sentences(text):
        out.extend(_cut(sentence, max_chars))
    return out


def text_length(text: str) -> int:
    """Length as :func:`split_text` counts it: characters, a ``[...]`` tag counting one."""
    return len(_ATOM.findall(text))


def _rank(atoms: list[str], i: int) -> int | None:
    """Boundary rank of a cut after ``atoms[i]`` (lower is better), None if no boundary."""
    a = atoms[i]
    if a in _FULLWIDTH_RANK:
        return _FULLWIDTH_RANK[a]
    if a.isspace():
        return _SPACE_RANK
    if a in _ASCII_RANK:
        nxt = atoms[i + 1] if i + 1 < len(atoms) else " "
        if nxt.isspace() or not nxt.isascii() or nxt.startswith("["):
            return _ASCII_RANK[a]
    return None


def _cut_point(atoms: list[str], start: int, limit: int) -> int:
    """How many atoms go into the next piece: ``start`` leading spaces plus 1..limit."""
    best: dict[int, int] = {}
    for i in range(start, min(start + limit, len(atoms))):
        rank = _rank(atoms, i)
        if rank is not None:
            best[rank] = i + 1 - start
    for rank in sorted(best):
        if best[rank] * 2 >= limit:
            return start + best[rank]
    return start + max(best.values(), default=limit)


def _cut(sentence: str, limit: int) -> list[str]:
    atoms = _ATOM.findall(sentence)
    pieces = []
    while True:
        lead = _spaces(atoms)
        if len(atoms) - lead - _spaces(atoms[::-1]) <= limit:
            break
        n = _cut_point(atoms, lead, limit)
        while n < len(atoms) and atoms[n].isspace():
            n += 1
        pieces.append("".join(atoms[:n]))
        atoms = atoms[n:]
    if atoms:
        pieces.append("".join(atoms))
    return pieces


def _spaces(atoms: list[str]) -> int:
    """How many atoms at the start of ``atoms`` are whitespace."""
    n = 0
    while n < len(atoms) and atoms[n].isspace():
        n += 1
    return n
