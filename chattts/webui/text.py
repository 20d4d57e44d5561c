"""What the page does with text, free of Gradio: the limits, text files, SSML wrapping, the
names of downloads and the caption table.

The page speaks up to :data:`MAX_TEXT_CHARS` characters at a time (the server's limit too);
longer documents go to ``chattts narrate`` (docs/narrate.md), which :data:`LONG_TEXT_HINT`
says.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from xml.sax.saxutils import escape

from ..audio.speech import Segment
from ..errors import DocumentError
from ..ssml import is_ssml

#: Most characters spoken at once from the page (the server's ``input`` limit).
MAX_TEXT_CHARS = 4096
#: Largest text file the page opens, in bytes (a file that holds more than the page speaks
#: once read is refused by :data:`MAX_TEXT_CHARS` anyway: this bounds the reading).
MAX_TEXT_FILE_BYTES = 256 * 1024
#: The text files the page opens.
TEXT_FILE_TYPES = (".txt", ".md")
#: Longest file name stem of a download, in characters.
MAX_NAME_CHARS = 40
#: The page's first text: plain words (no ``[uv_break]`` or other control token).
EXAMPLE = (
    "Hello! ChatTTS turns text into natural, conversational speech. "
    "Type your own words here, pick a voice, and press Generate."
)
#: Where long documents go.
LONG_TEXT_HINT = (
    "Longer than a few pages? `chattts narrate book.epub -o book/` reads .txt, .md, .html "
    "and .epub into chaptered audio with captions, and resumes where it stopped "
    "(docs/narrate.md)."
)


def check_length(text: str) -> None:
    """Raise :class:`~chattts.errors.DocumentError` for a text longer than the page speaks
    (the message points to ``chattts narrate``)."""
    if len(text) > MAX_TEXT_CHARS:
        raise DocumentError(
            f"the text has {len(text):,} characters; this page speaks up to "
            f"{MAX_TEXT_CHARS:,} at a time. For long texts use `chattts narrate FILE -o DIR` "
            "(docs/narrate.md)"
        )


def read_text_file(path: str, name: str | None = None) -> str:
    """The text of a ``.txt`` or ``.md`` file as the page speaks it: its paragraphs (Markdown
    rendered to plain text, as ``chattts narrate`` reads it) separated by blank lines.

    Args:
        path: the file (an upload). ``name``: its name as the user knows it, for messages.

    Raises:
        DocumentError: another type, a file over :data:`MAX_TEXT_FILE_BYTES`, text that is
        not UTF-8, no text, or more than :data:`MAX_TEXT_CHARS` characters.
    """
    from ..narrate.documents import load_document

    shown = name or os.path.basename(path)
    suffix = os.path.splitext(shown)[1].lower() or os.path.splitext(path)[1].lower()
    if suffix not in TEXT_FILE_TYPES:
        raise DocumentError(f"{shown}: open a {' or '.join(TEXT_FILE_TYPES)} file")
    size = os.path.getsize(path)
    if size > MAX_TEXT_FILE_BYTES:
        raise DocumentError(
            f"{shown} is {size:,} bytes; this page opens text files up to "
            f"{MAX_TEXT_FILE_BYTES // 1024} KB. For long documents use "
            f"`chattts narrate {shown} -o DIR` (docs/narrate.md)"
        )
    doc = load_document(path, kind=suffix[1:])
    text = "\n\n".join(p for chapter in doc.chapters for p in chapter.paragraphs)
    if not text.strip():
        raise DocumentError(f"{shown} holds no text")
    if len(text) > MAX_TEXT_CHARS:
        raise DocumentError(
            f"{shown} holds {len(text):,} characters; this page speaks up to "
            f"{MAX_TEXT_CHARS:,} at a time. Narrate it instead: "
            f"`chattts narrate {shown} -o DIR` (docs/narrate.md)"
        )
    return text


def as_ssml(text: str) -> str:
    """``text`` as an SSML document: unchanged when it is one, else its words (escaped) inside
    ``<speak>``, one ``<p>`` per paragraph."""
    if is_ssml(text):
        return text
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    body = "\n".join(f"  <p>{escape(' '.join(p.split()))}</p>" for p in paragraphs)
    return f"<speak>\n{body}\n</speak>" if body else "<speak>\n  \n</speak>"


def file_stem(texts: Iterable[str], fallback: str = "speech") -> str:
    """A download's file name stem from the words spoken: lower case, words joined by ``-``,
    at most :data:`MAX_NAME_CHARS` characters (``"Hello there!"`` -> ``"hello-there"``)."""
    words = re.findall(r"\w+", " ".join(texts).lower())
    out = ""
    for word in words:
        word = word[:MAX_NAME_CHARS]
        joined = f"{out}-{word}" if out else word
        if len(joined) > MAX_NAME_CHARS:
            break
        out = joined
    return out.strip("_") or fallback


def caption_rows(segments: Iterable[Segment]) -> list[list[str]]:
    """The caption table under the player: one row per segment, ``[start, end, text]`` with the
    times as ``m:ss.ss``."""
    return [[clock(s.start), clock(s.end), s.text] for s in segments]


def clock(seconds: float) -> str:
    """``75.25`` -> ``"1:15.25"``."""
    minutes, rest = divmod(max(0.0, seconds), 60.0)
    return f"{int(minutes)}:{rest:05.2f}"


__all__ = [
    "EXAMPLE",
    "LONG_TEXT_HINT",
    "MAX_TEXT_CHARS",
    "MAX_TEXT_FILE_BYTES",
    "TEXT_FILE_TYPES",
    "as_ssml",
    "caption_rows",
    "check_length",
    "clock",
    "file_stem",
    "read_text_file",
]
