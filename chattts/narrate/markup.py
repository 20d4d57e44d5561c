"""Text out of HTML and Markdown: what a reader would hear, as blocks (docs/narrate.md).

:func:`html_blocks` reads HTML with the standard library's :mod:`html.parser` (a tokenizer: it
never runs or fetches anything) and keeps only text: ``<script>``, ``<style>``, ``<template>``,
``<noscript>``, ``<svg>``, ``<math>``, ``<iframe>`` and ``<object>`` are dropped with their
content (``<title>`` is read as the title), tags are removed, entities decoded and whitespace
collapsed.
Each paragraph-like element (``p``, ``li``, ``div``, ``pre``...) ends a block; ``h1``…``h6``
give heading blocks, which :func:`chattts.narrate.documents.chapters_of` turns into chapters.
:func:`markdown_blocks` renders Markdown to HTML with markdown-it-py (CommonMark, plus tables
and strikethrough) and reads that, so Markdown syntax (emphasis markers, link targets, code
fences, images) is never spoken: a link gives its text, code its content.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Optional

from ..errors import DocumentError, MissingDependencyError

#: Elements whose content is never spoken.
SKIPPED = frozenset({"script", "style", "template", "noscript", "svg", "math", "iframe", "object"})
#: Elements that end a paragraph (besides the headings).
BLOCKS = frozenset(
    {
        "address", "article", "aside", "blockquote", "body", "br", "caption", "center",
        "dd", "details", "div", "dl", "dt", "figcaption", "figure", "footer", "header",
        "hr", "html", "li", "main", "nav", "ol", "p", "pre", "section", "summary", "table",
        "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
    }
)  # fmt: skip
HEADINGS = {f"h{i}": i for i in range(1, 7)}
#: Blocks that a ``<br>`` only breaks a line of (verse, addresses): it becomes a space.
_LINE_BREAK = "br"
_SPACES = re.compile(r"\s+")
_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u200b\u200c\u200d\u2060\ufeff"))


@dataclass(frozen=True)
class Block:
    """A paragraph or a heading of a document.

    Attributes:
        text: its text, whitespace collapsed (never empty).
        level: 0 for a paragraph, 1-6 for a heading (``h1``…``h6``, ``#``…``######``).
        anchors: the ``id`` (and ``<a name>``) values met since the previous block: where an
            EPUB table of contents may point.
    """

    text: str
    level: int = 0
    anchors: tuple[str, ...] = ()


def clean_text(text: str) -> str:
    """Whitespace collapsed to single spaces, control and invisible characters removed."""
    text = text.translate(_INVISIBLE)
    text = "".join(c for c in text if c in "\t\n\r" or unicodedata.category(c) != "Cc")
    return _SPACES.sub(" ", text).strip()


class _TextParser(HTMLParser):
    """Collects :class:`Block` values from HTML (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self.title = ""
        self._buf: list[str] = []
        self._anchors: list[str] = []
        self._skip: Optional[str] = None  # the element being skipped
        self._skip_depth = 0
        self._level = 0
        self._in_title = False
        self._pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, Optional[str]]]) -> None:
        if self._skip is not None:
            self._skip_depth += tag == self._skip
            return
        if tag == "title":
            self._in_title = True
            return
        if tag in SKIPPED:
            self._skip, self._skip_depth = tag, 1
            return
        if tag in HEADINGS:
            self._flush()
            self._level = HEADINGS[tag]
        elif tag == _LINE_BREAK:
            self._buf.append("\n" if self._pre else " ")
        elif tag in BLOCKS:
            self._flush()
            self._pre += tag == "pre"
        for key, value in attrs:
            if value and (key == "id" or (key == "name" and tag == "a")):
                self._anchors.append(value)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, Optional[str]]]) -> None:
        if tag in SKIPPED or tag == "title":  # <script/> has no content to skip
            return
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if self._skip is not None:
            if tag == self._skip:
                self._skip_depth -= 1
                if self._skip_depth == 0:
                    self._skip = None
            return
        if tag == "title":
            self._in_title = False
        elif tag in HEADINGS:
            self._flush()
            self._level = 0
        elif tag in BLOCKS:
            self._flush()
            if tag == "pre" and self._pre:
                self._pre -= 1
        elif tag in ("td", "th"):
            self._buf.append(" ")

    def handle_data(self, data: str) -> None:
        if self._skip is not None:
            return
        if self._in_title:
            self.title += data
        else:
            self._buf.append(data)

    def _flush(self) -> None:
        raw = "".join(self._buf)
        self._buf.clear()
        # preformatted text (verse, code): one paragraph per run of lines between blank lines
        pieces = re.split(r"\n\s*\n", raw) if self._pre else [raw]
        for piece in pieces:
            text = clean_text(piece)
            if text:
                self.blocks.append(Block(text, self._level, tuple(self._anchors)))
                self._anchors.clear()

    def close(self) -> None:
        super().close()
        self._flush()


def html_blocks(html: str) -> tuple[str, list[Block]]:
    """The ``<title>`` (cleaned, possibly empty) and the text blocks of an HTML document."""
    parser = _TextParser()
    parser.feed(html)
    parser.close()
    return clean_text(parser.title), parser.blocks


def decode_text(data: bytes, name: str) -> str:
    """UTF-8 bytes (a UTF-8 or UTF-16 byte-order mark allowed) -> str.

    Raises:
        DocumentError: bytes that are not UTF-8, with the offset of the first bad byte.
    """
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as e:
            raise DocumentError(f"{name}: not UTF-16 text at byte offset {e.start}") from e
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        bad = data[e.start : e.start + 1].hex()
        raise DocumentError(
            f"{name}: not UTF-8 text (byte 0x{bad} at byte offset {e.start}); convert it "
            "to UTF-8 first (for example: iconv -f LATIN1 -t UTF-8)"
        ) from e


def markdown_html(text: str) -> str:
    """Markdown (CommonMark, with tables and strikethrough) rendered to HTML."""
    try:
        from markdown_it import MarkdownIt
    except ImportError as e:  # pragma: no cover - a default dependency
        raise MissingDependencyError(
            "reading Markdown needs markdown-it-py: pip install 'markdown-it-py==4.*'"
        ) from e
    # raw HTML passes through, so that html_blocks drops its <script> and <style> elements
    md = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
    return md.render(text)


def markdown_blocks(text: str) -> list[Block]:
    """The text blocks of a Markdown document (headings ``#``…``######`` keep their level)."""
    return html_blocks(markdown_html(text))[1]


__all__ = [
    "BLOCKS",
    "HEADINGS",
    "SKIPPED",
    "Block",
    "clean_text",
    "decode_text",
    "html_blocks",
    "markdown_blocks",
]
