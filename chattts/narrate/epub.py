"""EPUB books: their spine's text and their table of contents' chapters (docs/narrate.md).

The file is checked with :mod:`zipfile` before ebooklib reads it, because ebooklib reads every
member into memory. Bounds (a :class:`~chattts.errors.DocumentError` names the one broken):

- the file: at most :data:`MAX_EPUB_BYTES`; a zip archive (else "not a zip file");
- at most :data:`MAX_MEMBERS` members;
- each member at most :data:`MAX_MEMBER_BYTES` uncompressed, all of them together at most
  :data:`MAX_TOTAL_BYTES`, as their headers declare (Python's zipfile never returns more than
  the declared size: it stops there and checks the CRC);
- a member over :data:`RATIO_FLOOR` bytes uncompressed may not be more than :data:`MAX_RATIO`
  times its compressed size (XHTML compresses 3 to 10 times, images not at all; a zip bomb
  some thousand times).

Chapters: every entry of the table of contents (NCX or EPUB 3 navigation, nested entries
flattened in order) starts a chapter at the document it names, or at the element whose ``id``
its ``#fragment`` names. Spine documents that no entry names continue the chapter before them;
text before the first entry is a chapter of its own (front matter). Without a table of
contents, each spine document is a chapter, named by its first heading. Non-linear spine items
(``linear="no"``: notes, pop-ups) and the navigation document are not read aloud.
"""

from __future__ import annotations

import logging
import os
import posixpath
import zipfile
from collections.abc import Iterator
from typing import Any, BinaryIO, Union
from urllib.parse import unquote

from ..errors import DocumentError, MissingDependencyError
from .markup import Block, clean_text, decode_text, html_blocks

logger = logging.getLogger("chattts")

#: Largest EPUB file read, in bytes.
MAX_EPUB_BYTES = 512 * 1024 * 1024
#: Most members (files) in an EPUB.
MAX_MEMBERS = 20_000
#: Largest member, uncompressed, in bytes.
MAX_MEMBER_BYTES = 128 * 1024 * 1024
#: Largest sum of the members' uncompressed sizes, in bytes.
MAX_TOTAL_BYTES = 1024 * 1024 * 1024
#: Highest uncompressed / compressed size of a member larger than :data:`RATIO_FLOOR`.
MAX_RATIO = 100
#: Members up to this uncompressed size (bytes) are not held to :data:`MAX_RATIO`.
RATIO_FLOOR = 1024 * 1024


def check_zip(source: Union[str, BinaryIO], name: str) -> None:
    """Refuse a file that is not a zip archive or breaks a bound of the module docstring."""
    if isinstance(source, str):
        if not os.path.isfile(source):
            raise DocumentError(f"{name}: not a file")
        size = os.path.getsize(source)
        if size > MAX_EPUB_BYTES:
            raise DocumentError(
                f"{name}: too large ({size / 2**20:.0f} MiB): at most "
                f"{MAX_EPUB_BYTES // 2**20} MiB are read"
            )
    try:
        with zipfile.ZipFile(source) as z:
            members = z.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as e:
        raise DocumentError(f"{name}: not an EPUB (not a zip file: {e})") from e
    finally:
        if not isinstance(source, str):
            source.seek(0)
    if len(members) > MAX_MEMBERS:
        raise DocumentError(f"{name}: {len(members)} files in the EPUB (at most {MAX_MEMBERS})")
    total = 0
    for m in members:
        if m.file_size > MAX_MEMBER_BYTES:
            raise DocumentError(
                f"{name}: {m.filename} expands to {m.file_size} bytes (at most "
                f"{MAX_MEMBER_BYTES}): refused as a possible zip bomb"
            )
        if m.file_size > RATIO_FLOOR and m.file_size > MAX_RATIO * max(m.compress_size, 1):
            ratio = m.file_size / max(m.compress_size, 1)
            raise DocumentError(
                f"{name}: {m.filename} expands {ratio:.0f} times (at most {MAX_RATIO}): "
                "refused as a possible zip bomb"
            )
        total += m.file_size
    if total > MAX_TOTAL_BYTES:
        raise DocumentError(
            f"{name}: its files expand to {total} bytes (at most {MAX_TOTAL_BYTES}): refused "
            "as a possible zip bomb"
        )


def _read_book(source: Union[str, BinaryIO], name: str) -> Any:
    try:
        from ebooklib import epub
    except ImportError as e:  # pragma: no cover - a default dependency
        raise MissingDependencyError(
            "reading EPUB needs ebooklib: pip install 'ebooklib==0.20.*'"
        ) from e
    try:
        return epub.read_epub(source, {"ignore_ncx": False})
    except Exception as e:  # ebooklib raises KeyError, IndexError, lxml errors, EpubException
        raise DocumentError(f"{name}: not a readable EPUB ({type(e).__name__}: {e})") from e


def _href(href: str) -> tuple[str, str]:
    """A table-of-contents href -> (its document's normalised path, its fragment)."""
    path, _, fragment = (href or "").partition("#")
    return posixpath.normpath(unquote(path)) if path else "", unquote(fragment)


def _toc_entries(toc: Any) -> Iterator[tuple[str, str]]:
    """(href, title) of every entry of an ebooklib table of contents, depth first."""
    if not isinstance(toc, (list, tuple)):  # ebooklib gives an empty NCX as one bare Link
        toc = [toc]
    for entry in toc:
        if isinstance(entry, (tuple, list)) and len(entry) == 2:
            section, children = entry
            if getattr(section, "href", ""):
                yield section.href, section.title or ""
            yield from _toc_entries(children)
        elif getattr(entry, "href", ""):
            yield entry.href, entry.title or ""


def _spine_documents(book: Any, name: str) -> Iterator[tuple[str, bytes]]:
    """(normalised path, content) of the linear spine documents, in reading order."""
    from ebooklib import ITEM_DOCUMENT
    from ebooklib.epub import EpubNav

    for idref, linear in book.spine:
        item = book.get_item_with_id(idref)
        if item is None or str(linear).lower() == "no":
            continue
        nav = isinstance(item, EpubNav) or "nav" in (getattr(item, "properties", None) or [])
        if nav or item.get_type() != ITEM_DOCUMENT:
            continue
        yield posixpath.normpath(item.get_name()), item.get_content()


def epub_blocks(
    source: Union[str, BinaryIO], name: str
) -> tuple[str, list[Block], list[tuple[int, str]]]:
    """An EPUB's title, the text blocks of its spine documents in order, and where its chapters
    start: (block index, title) pairs, increasing.

    Raises:
        DocumentError: a file that breaks a bound, is not a zip, or not an EPUB.
    """
    check_zip(source, name)
    book = _read_book(source, name)
    titles = book.get_metadata("DC", "title")
    title = clean_text(titles[0][0]) if titles and titles[0][0] else ""
    blocks: list[Block] = []
    doc_start: dict[str, int] = {}
    for path, content in _spine_documents(book, name):
        doc_start.setdefault(path, len(blocks))
        blocks += html_blocks(decode_text(content, f"{name}: {path}"))[1]
    starts = _toc_starts(book.toc, blocks, doc_start)
    if not starts:  # no usable table of contents: a chapter per spine document
        starts = [(i, _first_heading(blocks, i, n)) for n, i in enumerate(_doc_firsts(doc_start))]
    return title, blocks, _increasing(starts, len(blocks))


def _doc_firsts(doc_start: dict[str, int]) -> list[int]:
    return sorted(set(doc_start.values()))


def _first_heading(blocks: list[Block], start: int, n: int) -> str:
    for b in blocks[start : start + 20]:
        if b.level:
            return b.text
    return f"Chapter {n + 1}"


def _toc_starts(toc: Any, blocks: list[Block], doc_start: dict[str, int]) -> list[tuple[int, str]]:
    """The block index each table-of-contents entry points to, with its title."""
    by_base = {posixpath.basename(p): i for p, i in doc_start.items()}
    ends = sorted(set(doc_start.values())) + [len(blocks)]
    starts: list[tuple[int, str]] = []
    for href, entry_title in _toc_entries(toc):
        path, fragment = _href(href)
        first = doc_start.get(path, by_base.get(posixpath.basename(path)))
        if first is None:
            logger.info("table of contents entry %r points outside the spine: skipped", href)
            continue
        index = first
        if fragment:
            end = min(e for e in ends if e > first) if any(e > first for e in ends) else first
            index = next((i for i in range(first, end) if fragment in blocks[i].anchors), first)
        starts.append((index, clean_text(entry_title) or f"Chapter {len(starts) + 1}"))
    return starts


def _increasing(starts: list[tuple[int, str]], n: int) -> list[tuple[int, str]]:
    """Starts sorted by position; of several at one position the first, none at the end."""
    out: list[tuple[int, str]] = []
    for index, title in sorted(starts, key=lambda s: s[0]):
        if index < n and (not out or index > out[-1][0]):
            out.append((index, title))
    return out


__all__ = [
    "MAX_EPUB_BYTES",
    "MAX_MEMBERS",
    "MAX_MEMBER_BYTES",
    "MAX_RATIO",
    "MAX_TOTAL_BYTES",
    "RATIO_FLOOR",
    "check_zip",
    "epub_blocks",
]
