"""The typed result of synthesis: audio with the time of every spoken segment and mark.

:class:`Speech` holds mono float32 audio, its rate, the :class:`Segment` s (what is spoken
when, in seconds of the final audio) and the :class:`Mark` s (named points, e.g. SSML
``<mark/>``). :func:`assemble` builds one from pieces, finishing each piece and the whole,
and records every time from sample counts after finishing, so captions never interpolate
(docs/captions.md).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import IO, Optional, Union

import numpy as np

from ..captions import Cue, cues, write_captions
from ..errors import InputTypeError, ParameterError
from . import dsp
from .encode import save_audio
from .finish import Finish, apply_fades, fade_samples, level_gain
from .finish import finish as finish_audio
from .formats import PathOrFile, Waveform, as_mono, check_rate


def _time(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputTypeError(f"{name} must be a number of seconds, not {value!r}")
    if not (math.isfinite(value) and value >= 0):
        raise ParameterError(f"{name} must be a finite number of seconds ≥ 0, not {value!r}")
    return float(value)


@dataclass(frozen=True)
class Segment:
    """What is spoken from ``start`` to ``end`` (seconds of the final audio) by ``voice``."""

    start: float
    end: float
    text: str
    voice: Optional[str] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", _time("Segment.start", self.start))
        object.__setattr__(self, "end", _time("Segment.end", self.end))
        if self.end < self.start:
            raise ParameterError(f"Segment.end ({self.end}) is before its start ({self.start})")
        if not isinstance(self.text, str):
            raise InputTypeError(f"Segment.text must be a str, not {type(self.text).__name__}")


@dataclass(frozen=True)
class Mark:
    """A named point in the audio, ``time`` seconds from its start."""

    name: str
    time: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "time", _time("Mark.time", self.time))
        if not isinstance(self.name, str):
            raise InputTypeError(f"Mark.name must be a str, not {type(self.name).__name__}")


@dataclass(frozen=True, eq=False)
class Speech:
    """Audio (float32 (n,) at ``sample_rate`` Hz) with its segments and marks, in time order.

    Raises:
        AudioError: audio that is not mono or not finite; ParameterError: a segment or mark
        outside the audio, or segments out of order or overlapping.
    """

    audio: np.ndarray
    sample_rate: int
    segments: tuple[Segment, ...] = ()
    marks: tuple[Mark, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "audio", as_mono(self.audio))
        object.__setattr__(self, "sample_rate", check_rate(self.sample_rate))
        object.__setattr__(self, "segments", tuple(self.segments))
        object.__setattr__(self, "marks", tuple(self.marks))
        end, last = self.duration + 1e-9, 0.0
        for s in self.segments:
            if s.start < last - 1e-9 or s.end > end:
                raise ParameterError(
                    f"segment {s.start:.3f}–{s.end:.3f} s overlaps the one before it or ends "
                    f"after the audio ({self.duration:.3f} s)"
                )
            last = s.end
        for m in self.marks:
            if m.time > end:
                raise ParameterError(f"mark {m.name!r} at {m.time:.3f} s is after the audio")

    @property
    def duration(self) -> float:
        """Seconds of audio."""
        return self.audio.size / self.sample_rate

    def captions(self, max_chars: int = 42, max_lines: int = 2) -> list[Cue]:
        """One caption cue per segment, laid out in lines (:func:`chattts.captions.cues`)."""
        return cues(self.segments, max_chars=max_chars, max_lines=max_lines, duration=self.duration)

    def save(
        self,
        path_or_file: PathOrFile,
        format: Optional[str] = None,
        *,
        bit_rate: Optional[int] = None,
    ) -> None:
        """Write the audio: :func:`chattts.audio.save_audio` (format from the suffix)."""
        save_audio(path_or_file, self.audio, self.sample_rate, format, bit_rate=bit_rate)

    def save_captions(
        self,
        path_or_file: Union[str, "os.PathLike[str]", IO[str], IO[bytes]],
        format: Optional[str] = None,
    ) -> None:
        """Write the captions (and, in JSON, the marks): :func:`chattts.captions.write_captions`."""
        write_captions(path_or_file, self.captions(), format, marks=self.marks)


@dataclass(frozen=True)
class Piece:
    """Spoken audio to assemble: a mono waveform, its text and voice, and its own finishing
    (tempo, pitch, gain: SSML prosody)."""

    audio: Waveform
    text: str
    voice: Optional[str] = None
    finish: Finish = Finish()


@dataclass(frozen=True)
class Pause:
    """Silence of ``seconds`` in the final audio (replaces the gap between two pieces)."""

    seconds: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "seconds", _time("Pause.seconds", self.seconds))


@dataclass(frozen=True)
class Bookmark:
    """A named point: becomes a :class:`Mark` at the time the next audio starts."""

    name: str


#: What :func:`assemble` takes: a Piece, a tuple ``(waveform, text[, voice])``, a Pause or a
#: number of seconds of silence, or a Bookmark.
PieceLike = Union[Piece, Pause, Bookmark, tuple, float, int]


def _as_item(item: PieceLike) -> Union[Piece, Pause, Bookmark]:
    if isinstance(item, (Piece, Pause, Bookmark)):
        return item
    if isinstance(item, (int, float)) and not isinstance(item, bool):
        return Pause(item)
    if isinstance(item, tuple) and len(item) in (2, 3) and isinstance(item[1], str):
        return Piece(*item)
    raise InputTypeError(
        "assemble() takes Piece, (waveform, text[, voice]), Pause, a number of seconds or "
        f"Bookmark items, not {item!r:.80}"
    )


def piece_finish(piece: Finish, whole: Finish) -> Finish:
    """A piece's finishing with the whole's tempo and pitch composed in (levels stay the
    piece's own: the whole's gain and loudness act on the assembled result)."""
    return replace(piece, tempo=piece.tempo * whole.tempo, pitch=piece.pitch + whole.pitch)


def _trim(wav: np.ndarray, threshold: Optional[float]) -> np.ndarray:
    if threshold is None:
        return wav
    loud = np.flatnonzero(np.abs(wav) > threshold)
    return wav[loud[0] : loud[-1] + 1] if loud.size else wav[:0]


_NO_FINISH = Finish()


def assemble(
    pieces: Iterable[PieceLike],
    rate: int = 24000,
    *,
    gap: float = 0.0,
    finish: Finish = _NO_FINISH,
    trim: Optional[float] = None,
) -> Speech:
    """Concatenate pieces into a :class:`Speech`, finishing each piece and the whole.

    Each piece gets its own :class:`Finish` with the whole's tempo multiplied in and its pitch
    added (its fades soften every join); ``gap`` seconds of silence go between two pieces
    with no :class:`Pause` between them; then the whole result gets ``finish``'s gain and
    loudness as one gain (capped by its true-peak ceiling) and its edge fades. Pauses and gaps
    are seconds of the final audio (tempo does not scale them).

    Every segment's start and end are its first and past-the-last sample in the result,
    divided by ``rate``: they are exact, whatever finishing, trimming and gaps did.

    Args:
        pieces: the items in order (see :data:`PieceLike`).
        rate: sample rate of every waveform, in Hz.
        gap: seconds of silence between consecutive pieces.
        finish: the whole result's finishing.
        trim: when set, samples with |x| ≤ ``trim`` are cut from both ends of each piece
            before finishing.
    """
    rate = check_rate(rate)
    gap_n = int(round(_time("gap", gap) * rate))
    if not isinstance(finish, Finish):
        raise InputTypeError(f"assemble(finish=...) takes a Finish, not {finish!r:.80}")
    items: Sequence[Union[Piece, Pause, Bookmark]] = [_as_item(p) for p in pieces]
    last_piece = max((i for i, p in enumerate(items) if isinstance(p, Piece)), default=-1)
    parts: list[np.ndarray] = []
    segments: list[Segment] = []
    marks: list[Mark] = []
    pos, pending_gap = 0, False
    for i, item in enumerate(items):
        if isinstance(item, Pause):
            n = int(round(item.seconds * rate))
            parts.append(np.zeros(n, dtype=np.float32))
            pos, pending_gap = pos + n, False
            continue
        if pending_gap and gap_n and i <= last_piece:
            parts.append(np.zeros(gap_n, dtype=np.float32))
            pos, pending_gap = pos + gap_n, False
        if isinstance(item, Bookmark):
            marks.append(Mark(str(item.name), pos / rate))
            continue
        wav = _trim(as_mono(item.audio), trim)
        out = finish_audio(wav, rate, piece_finish(item.finish, finish))
        segments.append(Segment(pos / rate, (pos + out.size) / rate, item.text, item.voice))
        parts.append(out)
        pos, pending_gap = pos + out.size, True
    audio = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
    if finish.active and audio.size:
        gain = level_gain(audio, rate, finish)
        if gain != 0.0:
            audio *= np.float32(dsp.db_to_gain(gain))
        apply_fades(audio, fade_samples(finish, rate, audio.size))
    return Speech(audio, rate, tuple(segments), tuple(marks))


__all__ = [
    "Bookmark",
    "Mark",
    "Pause",
    "Piece",
    "PieceLike",
    "Segment",
    "Speech",
    "assemble",
    "piece_finish",
]
