"""A narration's files: chapter audio, the whole book with chapter marks, captions and the
manifest (docs/narrate.md, "Outputs").

Every file is written atomically: to a temporary file in the output folder (``.NAME.tmp-…``),
flushed to disk, then renamed over its name, so a file is either the old one, the new one, or
absent; temporaries left by a killed run are removed by the next. A write that fails (a full
disk, a read-only folder) is a :class:`~chattts.errors.StoreError` naming the file.

A chapter's audio is its segments in order, each followed by its pause (the sentence, paragraph
or chapter pause of :class:`~chattts.narrate.segments.Pauses`); the book is the chapters in
order, so its length is the sum of the segments' lengths and pauses, to the sample.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .. import audio
from ..errors import StoreError, UsageError
from .segments import Segment
from .store import ProgressStore, StoredSegment

#: The manifest's file name.
MANIFEST = "manifest.json"
#: Formats of the whole book (``None``: no book file): MP4 audio (AAC) as ``.m4b``, or MP3.
BOOK_FORMATS = {"m4b": ("m4a", ".m4b"), "mp3": ("mp3", ".mp3")}
_SUFFIX = {"mp3": ".mp3", "wav": ".wav", "opus": ".opus", "flac": ".flac", "aac": ".aac"}
_SUFFIX |= {"m4a": ".m4a", "pcm": ".pcm"}
_TMP = ".tmp-"


@dataclass(frozen=True)
class OutputOptions:
    """What a narration writes.

    Attributes:
        format: the chapter files' format (:data:`chattts.audio.FORMATS`; default mp3).
        book: the whole book's format, ``"m4b"`` (default) or ``"mp3"``, with chapter marks;
            None for no book file.
        bit_rate: bits per second of lossy formats (default: chattts.audio's).
        captions: write each chapter's captions (segment timings, JSON).
    """

    format: str = "mp3"
    book: Optional[str] = "m4b"
    bit_rate: Optional[int] = None
    captions: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "format", audio.normalize_format(self.format))
        if self.book is not None and self.book not in BOOK_FORMATS:
            raise UsageError(f"book format {self.book!r}: use {', '.join(BOOK_FORMATS)}")


# ---- atomic files ------------------------------------------------------------------------------


def write_atomic(path: str, write: Callable[[str], None]) -> None:
    """Write ``path`` through ``write(temporary_path)``, then rename it into place.

    Raises:
        StoreError: the file cannot be written (the temporary file is removed).
    """
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f".{name}{_TMP}{uuid.uuid4().hex[:8]}")
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        _sync_folder(folder)
    except OSError as e:
        remove_file(tmp)
        raise StoreError(f"{path}: cannot write: {e.strerror or e}") from e
    except BaseException:
        remove_file(tmp)
        raise


def write_bytes(path: str, data: bytes) -> None:
    """``data`` into ``path``, atomically (:func:`write_atomic`)."""

    def put(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    write_atomic(path, put)


def _sync_folder(folder: str) -> None:
    try:
        fd = os.open(folder or ".", os.O_RDONLY)
    except OSError:  # folders cannot be opened on some systems: the rename is done anyway
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_file(path: str) -> None:
    """Remove ``path`` if it exists."""
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def remove_temporaries(folder: str) -> int:
    """Remove the temporary files a killed run left in ``folder``; returns how many."""
    gone = 0
    for name in os.listdir(folder):
        if name.startswith(".") and _TMP in name:
            remove_file(os.path.join(folder, name))
            gone += 1
    return gone


# ---- names, timelines, digests -----------------------------------------------------------------


def chapter_name(number: int, count: int, suffix: str) -> str:
    """``chapter_01.mp3``…: the chapter number from 1, zero-padded to the count's width."""
    return f"chapter_{number:0{max(2, len(str(count)))}d}{suffix}"


def audio_suffix(fmt: str) -> str:
    return _SUFFIX[audio.normalize_format(fmt)]


def pause_samples(segment: Segment, rate: int) -> int:
    return int(round(segment.pause * rate))


@dataclass(frozen=True)
class Cue:
    """A segment's place in its chapter file: samples [start, end) of speech, and its text."""

    start: int
    end: int
    text: str


def timeline(
    segments: Sequence[Segment], records: Mapping[str, StoredSegment], rate: int
) -> tuple[list[Cue], int]:
    """Each segment's speech in the chapter file, and the chapter's length (samples)."""
    cues, at = [], 0
    for s in segments:
        n = records[s.id].samples
        cues.append(Cue(at, at + n, s.text))
        at += n + pause_samples(s, rate)
    return cues, at


def digest(*parts: object) -> str:
    """A SHA-256 of JSON values (what a file holds, to skip rewriting an unchanged one)."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def chapter_audio(
    store: ProgressStore, segments: Sequence[Segment], rate: int
) -> Iterator[np.ndarray]:
    """A chapter's audio, segment by segment, each followed by its pause (float32 chunks)."""
    for s in segments:
        yield store.audio(s.id)
        n = pause_samples(s, rate)
        if n:
            yield np.zeros(n, np.float32)


# ---- the files ---------------------------------------------------------------------------------


def write_audio(
    path: str,
    chunks: Iterator[np.ndarray],
    fmt: str,
    rate: int,
    options: OutputOptions,
    chapters: Sequence[audio.ChapterMark] = (),
    metadata: Optional[Mapping[str, str]] = None,
) -> None:
    """Audio chunks into ``path`` (atomically) through :func:`chattts.audio.save_audio_chunks`."""

    def put(tmp: str) -> None:
        audio.save_audio_chunks(
            tmp,
            chunks,
            rate,
            fmt,
            bit_rate=options.bit_rate,
            chapters=chapters,
            metadata=metadata,
        )

    write_atomic(path, put)


def captions_json(cues: Sequence[Cue], rate: int) -> str:
    """``{"captions": [{"start", "end", "text"}]}``, times in seconds from the file's start."""
    items = [
        {"start": round(c.start / rate, 6), "end": round(c.end / rate, 6), "text": c.text}
        for c in cues
    ]
    return json.dumps({"captions": items}, ensure_ascii=False, indent=1) + "\n"


def write_json(path: str, value: object) -> None:
    write_bytes(path, (json.dumps(value, ensure_ascii=False, indent=2) + "\n").encode("utf-8"))


def book_chapters(lengths: Sequence[int], titles: Sequence[str]) -> list[audio.ChapterMark]:
    """Chapter marks of the book: chapter n spans the samples after chapters 0…n-1."""
    marks, at = [], 0
    for n, title in zip(lengths, titles, strict=True):
        marks.append(audio.ChapterMark(at, at + n, title))
        at += n
    return marks


def check_folder(folder: str) -> None:
    """Create ``folder`` if needed and check that files can be written in it (a probe file).

    Raises:
        StoreError: the folder cannot be created or written (read-only, full, not a folder).
    """
    try:
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, f".probe{_TMP}{uuid.uuid4().hex[:8]}")
        with open(probe, "wb") as f:
            f.write(b"\0")
        os.remove(probe)
    except OSError as e:
        raise StoreError(f"{folder}: cannot write in the output folder: {e.strerror or e}") from e


__all__ = [
    "BOOK_FORMATS",
    "MANIFEST",
    "Cue",
    "OutputOptions",
    "audio_suffix",
    "book_chapters",
    "captions_json",
    "chapter_audio",
    "chapter_name",
    "check_folder",
    "digest",
    "remove_file",
    "remove_temporaries",
    "timeline",
    "write_atomic",
    "write_audio",
    "write_bytes",
    "write_json",
]
