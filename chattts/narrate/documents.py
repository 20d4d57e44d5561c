"""Documents to narrate: ``.txt``, ``.md``, ``.html``/``.htm``, ``.epub`` or stdin, read into
chapters of paragraphs (docs/narrate.md, "Documents").

Chapters come from the document's structure: the EPUB's table of contents and spine
(:mod:`.epub`), Markdown's ``#`` / ``##`` headings, HTML's ``<h1>`` / ``<h2>``; or, with a
chapter pattern, from the lines (paragraphs) that match it. Plain text without a pattern is one
chapter. A heading is also read aloud: it is the first paragraph of its chapter.

Limits (each refused with a :class:`~chattts.errors.DocumentError` before the text is read
whole): a text (``.txt``, ``.md``, ``.html``, stdin) of more than :data:`MAX_TEXT_BYTES`; text
that is not UTF-8 (the error gives the byte offset; a UTF-16 file with its byte-order mark is
read); a document without any text. EPUB limits: :mod:`.epub`.
"""

from __future__ import annotations

import io
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO, Optional, Union

from ..errors import DocumentError, UsageError
from .epub import MAX_EPUB_BYTES, epub_blocks
from .markup import Block, clean_text, decode_text, html_blocks, markdown_blocks

#: Largest text document (and stdin) read, in bytes: about 8 million words, 20 days of speech.
MAX_TEXT_BYTES = 50 * 1024 * 1024
#: Document types by name, and the suffixes that select them.
KINDS = {
    "txt": (".txt", ".text", ""),
    "md": (".md", ".markdown"),
    "html": (".html", ".htm", ".xhtml"),
    "epub": (".epub",),
}
_CJK = re.compile(r"[\u3000-\u9fff\uac00-\ud7af\uff00-\uffef]")


@dataclass(frozen=True)
class Chapter:
    """One chapter: its title and its paragraphs (each non-empty, whitespace collapsed)."""

    title: str
    paragraphs: tuple[str, ...]


@dataclass(frozen=True)
class Document:
    """A document read for narration: a title and at least one chapter."""

    title: str
    chapters: tuple[Chapter, ...]


def document_kind(path: str, kind: Optional[str] = None) -> str:
    """The document type of ``path`` (``txt``, ``md``, ``html`` or ``epub``), from ``kind``
    when given, else from the suffix (stdin, ``-``: ``txt``).

    Raises:
        DocumentError: an unknown type or suffix.
    """
    if kind is not None:
        if kind not in KINDS:
            raise DocumentError(f"unknown document type {kind!r}: use {', '.join(KINDS)}")
        return kind
    if path == "-":
        return "txt"
    suffix = os.path.splitext(path)[1].lower()
    for name, suffixes in KINDS.items():
        if suffix in suffixes:
            return name
    known = ", ".join(s for ss in KINDS.values() for s in ss if s)
    raise DocumentError(f"{path}: unknown document type {suffix!r}: use {known}")


def load_document(
    path: str,
    *,
    kind: Optional[str] = None,
    chapter_pattern: Optional[str] = None,
    stdin: Optional[BinaryIO] = None,
) -> Document:
    """Read a document (``-``: stdin) into chapters.

    Args:
        path: a file, or ``-`` for ``stdin`` (default ``sys.stdin.buffer``).
        kind: ``txt``, ``md``, ``html`` or ``epub`` (default: from the suffix; stdin: txt).
        chapter_pattern: a regular expression; a line (a paragraph or heading, in structured
            documents) in which it matches (``re.search``) starts a chapter, instead of the
            document's structure.

    Raises:
        DocumentError: see the module docstring; OSError: the file cannot be read.
    """
    kind = document_kind(path, kind)
    pattern = _compile(chapter_pattern)
    name = "stdin" if path == "-" else path
    fallback = "stdin" if path == "-" else os.path.splitext(os.path.basename(path))[0]
    if kind == "epub":
        source: Union[str, BinaryIO] = path
        if path == "-":
            source = io.BytesIO(_read_limited(stdin or sys.stdin.buffer, name, MAX_EPUB_BYTES))
        title, blocks, starts = epub_blocks(source, name)
        if pattern is None:
            return _document(name, title or fallback, _chapters_at(blocks, starts, title))
        return _document(name, title or fallback, _by_pattern(blocks, pattern, title))
    data = _read_limited(stdin or sys.stdin.buffer, name) if path == "-" else _read_file(path)
    text = decode_text(data, name)
    if kind == "txt":  # a matching line is a heading of its own (text_blocks)
        blocks = text_blocks(text, pattern)
        starts = [i for i, b in enumerate(blocks) if b.level == 1]
        return _document(name, fallback, _split(blocks, starts, _titles(blocks, starts), fallback))
    if kind == "md":
        title, blocks = "", markdown_blocks(text)
    else:
        title, blocks = html_blocks(text)
    if pattern is not None:
        return _document(name, title or fallback, _by_pattern(blocks, pattern, title or fallback))
    book, chapters = chapters_of(blocks, title or fallback)
    return _document(name, title or book or fallback, chapters)


def _compile(pattern: Optional[str]) -> Optional[re.Pattern[str]]:
    if pattern is None:
        return None
    try:
        return re.compile(pattern)
    except re.error as e:
        raise UsageError(f"--chapter-pattern {pattern!r}: not a regular expression ({e})") from e


def _document(name: str, title: str, chapters: Sequence[Chapter]) -> Document:
    kept = tuple(c for c in chapters if c.paragraphs)
    if not kept:
        raise DocumentError(f"{name}: nothing to narrate (the document holds no text)")
    return Document(clean_text(title) or "Untitled", kept)


# ---- bytes and text ---------------------------------------------------------------------------


def _read_file(path: str) -> bytes:
    size = os.stat(path).st_size
    if size > MAX_TEXT_BYTES:
        raise DocumentError(_too_large(path, size))
    with open(path, "rb") as f:
        return f.read(MAX_TEXT_BYTES + 1)


def _read_limited(stream: BinaryIO, name: str, limit: Optional[int] = None) -> bytes:
    """At most ``limit`` bytes (default :data:`MAX_TEXT_BYTES`) of ``stream``; more is an
    error."""
    limit = MAX_TEXT_BYTES if limit is None else limit
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise DocumentError(_too_large(name, None, limit))
    return data


def _too_large(name: str, size: Optional[int], limit: Optional[int] = None) -> str:
    limit = MAX_TEXT_BYTES if limit is None else limit
    got = f" ({size / 2**20:.1f} MiB)" if size is not None else ""
    return f"{name}: too large{got}: at most {limit // 2**20} MiB are narrated; split it"


def join_lines(lines: Sequence[str]) -> str:
    """Lines of one paragraph as one line: joined by a space, except between CJK characters
    (hard-wrapped Chinese text has no spaces)."""
    out = ""
    for line in (s.strip() for s in lines):
        if not line:
            continue
        if out and not (_CJK.match(out[-1]) and _CJK.match(line[0])):
            out += " "
        out += line
    return out


def text_blocks(text: str, pattern: Optional[re.Pattern[str]] = None) -> list[Block]:
    """Plain text -> paragraphs (separated by blank lines; lines within one joined). A line
    in which ``pattern`` matches is a heading (level 1) on its own."""
    blocks: list[Block] = []
    para: list[str] = []

    def flush() -> None:
        joined = clean_text(join_lines(para))
        if joined:
            blocks.append(Block(joined))
        para.clear()

    for line in text.splitlines():
        if pattern is not None and line.strip() and pattern.search(line):
            flush()
            blocks.append(Block(clean_text(line), 1))
        elif line.strip():
            para.append(line)
        else:
            flush()
    flush()
    return blocks


# ---- chapters ----------------------------------------------------------------------------------


def chapter_level(blocks: Sequence[Block]) -> Optional[int]:
    """The heading level that starts chapters: 1 when there are several ``h1``, else 2 when
    there is any ``h2`` (a lone ``h1`` is then the book's title), else None (one chapter)."""
    h1 = sum(b.level == 1 for b in blocks)
    if h1 >= 2:
        return 1
    if any(b.level == 2 for b in blocks):
        return 2
    return None


def chapters_of(blocks: Sequence[Block], title: str) -> tuple[str, list[Chapter]]:
    """Chapters at the headings of :func:`chapter_level` (``title`` names a single chapter, or
    the text before the first heading). Returns the lone ``h1``'s text (the title of the book
    when chapters are ``h2``; else '') and the chapters."""
    level = chapter_level(blocks)
    h1 = [b.text for b in blocks if b.level == 1]
    book = h1[0] if len(h1) == 1 else ""
    if level is None:
        return book, [Chapter(book or title, tuple(b.text for b in blocks))]
    starts = [i for i, b in enumerate(blocks) if b.level == level]
    return book, _split(blocks, starts, _titles(blocks, starts), book or title)


def _split(
    blocks: Sequence[Block], starts: Sequence[int], titles: Sequence[str], front_title: str
) -> list[Chapter]:
    """Chapters beginning at block indices ``starts`` (increasing). Blocks before the first
    start are a chapter of their own when they hold a paragraph, else (headings only, such as
    the book's title) they open the first chapter."""
    chapters: list[Chapter] = []
    if not starts:
        return [Chapter(front_title, tuple(b.text for b in blocks))]
    front = list(blocks[: starts[0]])
    lead: tuple[str, ...] = ()
    if any(b.level == 0 for b in front):
        chapters.append(Chapter(front_title, tuple(b.text for b in front)))
    else:
        lead = tuple(b.text for b in front)
    for n, (start, title) in enumerate(zip(starts, titles, strict=True)):
        end = starts[n + 1] if n + 1 < len(starts) else len(blocks)
        texts = tuple(b.text for b in blocks[start:end])
        chapters.append(Chapter(title, (lead + texts) if n == 0 else texts))
    return chapters


def _chapters_at(
    blocks: Sequence[Block], starts: Sequence[tuple[int, str]], title: str
) -> list[Chapter]:
    """Chapters from (block index, title) starts (an EPUB's table of contents)."""
    return _split(blocks, [i for i, _ in starts], [t for _, t in starts], title or "Front matter")


def _titles(blocks: Sequence[Block], starts: Sequence[int]) -> list[str]:
    return [blocks[i].text for i in starts]


def _by_pattern(blocks: Sequence[Block], pattern: re.Pattern[str], title: str) -> list[Chapter]:
    starts = [i for i, b in enumerate(blocks) if pattern.search(b.text)]
    return _split(blocks, starts, _titles(blocks, starts), title)


__all__ = [
    "KINDS",
    "MAX_TEXT_BYTES",
    "Chapter",
    "Document",
    "chapter_level",
    "chapters_of",
    "document_kind",
    "join_lines",
    "load_document",
    "text_blocks",
]
