"""A narration's files: chapter audio, the whole book with chapter marks, captions and the
manifest (docs/narrate.md, "Outputs").

Captions are written by :mod:`chattts.captions` (SRT, WebVTT or JSON: one cue per segment), and
finishing (tempo, pitch, gain, loudness) is :class:`chattts.audio.finish.Finish` applied to each
chapter through :func:`chattts.audio.speech.assemble`, the library's one implementation of both.

Every file is written atomically: to a temporary file in the output folder (``.NAME.tmp-…``),
flushed to disk, then renamed over its name, so a file is either the old one, the new one, or
absent; temporaries left by a killed run are removed by the next. A write that fails (a full
disk, a read-only folder) is a :class:`~chattts.errors.StoreError` naming the file.

A chapter's audio is its segments in order, each followed by its pause (the sentence, paragraph
or chapter pause of :class:`~chattts.narrate.segments.Pauses`); the book is the chapters in
order, so its length is the sum of the segments' lengths and pauses, to the sample. With
finishing, a segment of n samples lasts ``round(n / tempo)`` (pauses are not stretched), so the
times stay sample counts, never estimates.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Optional, Union

import numpy as np

from .. import audio
from ..audio.finish import Finish
from ..audio.speech import Pause, Piece, Speech, assemble
from ..audio.speech import Segment as SpokenSegment
from ..captions import FORMATS as CAPTION_FORMATS
from ..captions import MAX_CHARS, caption_format, captions_text, cues
from ..errors import StoreError, UsageError
from .segments import Segment
from .store import ProgressStore, StoredSegment

#: The manifest's file name.
MANIFEST = "manifest.json"
#: Formats of the whole book (``None``: no book file): MP4 audio (AAC) as ``.m4b``, or MP3.
BOOK_FORMATS = {"m4b": ("m4a", ".m4b"), "mp3": ("mp3", ".mp3")}
_SUFFIX = {"mp3": ".mp3", "wav": ".wav", "opus": ".opus", "flac": ".flac", "aac": ".aac"}
_SUFFIX |= {"m4a": ".m4a", "pcm": ".pcm"}
#: Suffixes of the chapters' caption files, by caption format.
CAPTION_SUFFIXES = {"json": ".captions.json", "srt": ".srt", "vtt": ".vtt"}
_TMP = ".tmp-"


@dataclass(frozen=True)
class OutputOptions:
    """What a narration writes.

    Attributes:
        format: the chapter files' format (:data:`chattts.audio.FORMATS`; default mp3).
        book: the whole book's format, ``"m4b"`` (default) or ``"mp3"``, with chapter marks;
            None for no book file.
        bit_rate: bits per second of lossy formats (default: chattts.audio's).
        captions: each chapter's captions, one cue per segment: ``"json"`` (default),
            ``"srt"`` or ``"vtt"`` (:mod:`chattts.captions`); None: no caption files.
        finish: finishing of each chapter (tempo, pitch, gain, loudness); the default changes
            nothing. It changes the files, never a stored segment.

    Raises:
        UsageError: an unknown audio, book or caption format.
    """

    format: str = "mp3"
    book: Optional[str] = "m4b"
    bit_rate: Optional[int] = None
    captions: Optional[str] = "json"
    finish: Finish = field(default_factory=Finish)

    def __post_init__(self) -> None:
        object.__setattr__(self, "format", audio.normalize_format(self.format))
        if self.book is not None and self.book not in BOOK_FORMATS:
            raise UsageError(f"book format {self.book!r}: use {', '.join(BOOK_FORMATS)}")
        if self.captions is not None:
            object.__setattr__(self, "captions", caption_format(self.captions))
        if not isinstance(self.finish, Finish):
            raise UsageError(f"finish must be a Finish, not {type(self.finish).__name__}")

    def describe(self) -> dict[str, object]:
        """The options as the manifest shows them (JSON values)."""
        return {
            "format": self.format,
            "book": self.book,
            "bit_rate": self.bit_rate,
            "captions": self.captions,
            "finish": asdict(self.finish),
        }


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


def captions_suffix(fmt: str) -> str:
    """``.captions.json``, ``.srt`` or ``.vtt``: beside ``chapter_01.mp3``, a player finds
    ``chapter_01.srt`` by its name."""
    return CAPTION_SUFFIXES[caption_format(fmt)]


def pause_samples(segment: Segment, rate: int) -> int:
    return int(round(segment.pause * rate))


@dataclass(frozen=True)
class Cue:
    """A segment's place in its chapter file: samples [start, end) of speech, and its text."""

    start: int
    end: int
    text: str


def timeline(
    segments: Sequence[Segment],
    records: Mapping[str, StoredSegment],
    rate: int,
    finish: Finish = Finish(),  # noqa: B008 - frozen
) -> tuple[list[Cue], int]:
    """Each segment's speech in the chapter file, and the chapter's length (samples): a
    segment of n stored samples lasts ``finish.length(n)`` (``round(n / tempo)``), exactly
    what :func:`chapter_speech` gives it."""
    out, at = [], 0
    for s in segments:
        n = finish.length(records[s.id].samples)
        out.append(Cue(at, at + n, s.text))
        at += n + pause_samples(s, rate)
    return out, at


def digest(*parts: object) -> str:
    """A SHA-256 of JSON values (what a file holds, to skip rewriting an unchanged one)."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def chapter_speech(
    store: ProgressStore, segments: Sequence[Segment], rate: int, finish: Finish
) -> Speech:
    """A chapter finished whole (:func:`chattts.audio.speech.assemble`): each segment with
    the tempo and pitch, then the chapter's gain and loudness; its segments' measured times.
    It holds the chapter in memory (4 bytes a sample, about 350 MB per hour of chapter)."""
    pieces: list[Union[Piece, Pause]] = []
    for s in segments:
        pieces.append(Piece(store.audio(s.id), s.text))
        pieces.append(Pause(pause_samples(s, rate) / rate))
    return assemble(pieces, rate, finish=finish)


def chapter_audio(
    store: ProgressStore,
    segments: Sequence[Segment],
    rate: int,
    finish: Finish = Finish(),  # noqa: B008 - frozen
) -> Iterator[np.ndarray]:
    """A chapter's audio (float32 chunks): without finishing, segment by segment, each
    followed by its pause, never the whole chapter in memory; with it, :func:`chapter_speech`."""
    if finish.active:
        yield chapter_speech(store, segments, rate, finish).audio
        return
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


def chapter_captions(
    timed: Sequence[Cue], rate: int, fmt: str, max_chars: int = 2 * MAX_CHARS
) -> str:
    """A chapter's caption file (``fmt``: srt, vtt or json) through :mod:`chattts.captions`:
    one cue per segment at its exact times (samples / rate, seconds from the file's start),
    in lines of 42 columns. ``max_chars``, the longest segment in characters, sets how many
    lines a cue may take without a warning (a segment is one cue: 120 characters need three
    lines, or more where CJK characters take two columns)."""
    lines = max(2, -(-2 * max_chars // MAX_CHARS) + 1)
    segments = [SpokenSegment(c.start / rate, c.end / rate, c.text) for c in timed]
    return captions_text(cues(segments, max_lines=lines), fmt)


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
    "CAPTION_FORMATS",
    "CAPTION_SUFFIXES",
    "MANIFEST",
    "Cue",
    "OutputOptions",
    "audio_suffix",
    "book_chapters",
    "captions_suffix",
    "chapter_audio",
    "chapter_captions",
    "chapter_name",
    "chapter_speech",
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
