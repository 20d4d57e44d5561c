"""What ``chattts say`` writes: audio files with their caption files, all or nothing
(docs/cli.md, "chattts say").

Whole files are encoded in memory and committed together (:func:`write_files`: temporary
files, then ``os.replace``; a failure leaves none of them). A streamed file is written where
it will stay, as the audio arrives (:class:`StreamedFile`), and removed if the run fails
before it is complete; its captions follow once it is.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from typing import IO, Optional

import numpy as np

from .. import audio
from ..audio.speech import Mark, Segment, Speech
from ..captions import captions_text, cues
from ..captions.writers import caption_format
from ..voices import is_voice_reference


def numbered(path: str, n: int) -> list[str]:
    """``path`` for one file, else ``stem_0.ext``, ``stem_1.ext``... for ``n`` files."""
    if n == 1:
        return [path]
    stem, suffix = os.path.splitext(path)
    return [f"{stem}_{i}{suffix}" for i in range(n)]


def shifted(
    segments: Sequence[Segment], marks: Sequence[Mark], seconds: float
) -> tuple[list[Segment], list[Mark]]:
    """Segments and marks, ``seconds`` later."""
    later = [replace(s, start=s.start + seconds, end=s.end + seconds) for s in segments]
    return later, [replace(m, time=m.time + seconds) for m in marks]


def joined(speeches: Sequence[Speech], gap: float) -> Speech:
    """Several speeches as one, ``gap`` seconds of silence between two, each segment and mark
    at its time in the whole."""
    rate = speeches[0].sample_rate
    silence = np.zeros(int(round(gap * rate)), np.float32)
    parts: list[np.ndarray] = []
    segments: list[Segment] = []
    marks: list[Mark] = []
    for i, speech in enumerate(speeches):
        if i:
            parts.append(silence)
        later = shifted(speech.segments, speech.marks, sum(p.size for p in parts) / rate)
        segments += later[0]
        marks += later[1]
        parts.append(speech.audio)
    return Speech(np.concatenate(parts), rate, tuple(segments), tuple(marks))


def caption_bytes(
    path: str, segments: Sequence[Segment], marks: Sequence[Mark], duration: float
) -> bytes:
    """The caption file ``path`` names (its suffix: SRT, WebVTT or JSON), UTF-8. A voice is
    named only by a name (a speaker string, hundreds of characters, is left out)."""
    named = [s if is_voice_reference(s.voice) else replace(s, voice=None) for s in segments]
    text = captions_text(cues(named, duration=duration), caption_format(None, path), marks)
    return text.encode("utf-8")


def write_files(files: Sequence[tuple[str, bytes]]) -> None:
    """Write every (path, content) or none: each to a temporary file in its folder first,
    then all moved into place; on a failure the temporary files, and any already moved,
    are removed."""
    temps: list[tuple[str, str]] = []
    placed: list[str] = []
    mode = 0o666 & ~_umask()  # what open() would give, not mkstemp's 0o600
    try:
        for path, data in files:
            fd, tmp = tempfile.mkstemp(prefix=".say-", dir=os.path.dirname(os.path.abspath(path)))
            temps.append((tmp, path))
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(tmp, mode)
        for tmp, path in temps:
            os.replace(tmp, path)
            placed.append(path)
    except BaseException:
        for name in [t for t, _ in temps] + placed:
            if os.path.exists(name):
                os.unlink(name)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class StreamedFile:
    """One audio file (or stdout, ``"-"``) encoded as its audio arrives, with the segments
    and marks to caption it; removed on :meth:`abort` (a file only: stdout is not undone)."""

    def __init__(self, path: str, fmt: str, rate: int) -> None:
        self.path, self.fmt, self.rate = path, fmt, rate
        self.out: IO[bytes] = sys.stdout.buffer if path == "-" else open(path, "wb")
        self.encoder = audio.StreamEncoder(fmt, rate)
        self.samples = 0
        self.base = 0.0  # seconds: where the speech being written started
        self.segments: list[Segment] = []
        self.marks: list[Mark] = []
        self.closed = False

    def write(
        self, wav: np.ndarray, segments: Sequence[Segment] = (), marks: Sequence[Mark] = ()
    ) -> None:
        """New samples, and the segments and marks that ended with them (times in seconds
        from ``base``: :meth:`mark_start`)."""
        later = shifted(segments, marks, self.base)
        self.segments += later[0]
        self.marks += later[1]
        self.out.write(self.encoder.write(wav))
        self.out.flush()
        self.samples += wav.size

    def mark_start(self) -> None:
        """What comes next starts a new speech: its times count from here."""
        self.base = self.samples / self.rate

    def close(self) -> None:
        """Finish the file (a WAV file gets its real sizes in the header)."""
        self.out.write(self.encoder.close())
        self.closed = True
        if self.path == "-":
            self.out.flush()
            return
        self.out.close()
        if self.fmt == "wav":  # the streamed header had unknown sizes: write the real ones
            with open(self.path, "r+b") as g:
                audio.fix_wav_header(g)

    def abort(self) -> None:
        """The run failed: the file (never stdout) is removed, half-written as it is."""
        if self.path == "-":
            return
        if not self.out.closed:
            self.out.close()
        if os.path.exists(self.path):
            os.unlink(self.path)

    def captions(self, path: Optional[str]) -> list[tuple[str, bytes]]:
        """The caption file of what was written (none without ``path``)."""
        if path is None:
            return []
        return [(path, caption_bytes(path, self.segments, self.marks, self.samples / self.rate))]


__all__ = ["StreamedFile", "caption_bytes", "joined", "numbered", "shifted", "write_files"]
