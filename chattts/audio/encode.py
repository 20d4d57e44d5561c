"""Encoding: whole files in memory or on disk, and incremental encoding for streaming."""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from ..errors import AudioError
from .formats import (
    MEDIA_TYPES,
    PathOrFile,
    Waveform,
    as_mono,
    check_rate,
    ffmpeg_reason,
    fix_wav_header,
    format_from_path,
    import_av,
    normalize_format,
    to_pcm16,
    wav_header,
)

_FRAME = 1 << 15  # samples per frame handed to PyAV when encoding a whole waveform


@dataclass(frozen=True)
class _Codec:
    container: str
    codec: str
    bit_rate: int | None
    streamable: bool = True
    options: dict[str, str] = field(default_factory=dict)  # muxer options when streaming


_AV_CODECS = {
    "mp3": _Codec("mp3", "libmp3lame", 64_000, options={"write_xing": "0"}),
    "opus": _Codec("ogg", "libopus", 48_000, options={"page_duration": "100000"}),
    "flac": _Codec("flac", "flac", None),
    "aac": _Codec("adts", "aac", 64_000),
    "m4a": _Codec("ipod", "aac", 64_000, streamable=False),
}
#: Formats whose files carry chapter marks (:func:`save_audio_chunks`): MP4 (a QuickTime
#: chapter track and a Nero ``chpl`` atom; ``.m4b`` for audiobooks) and MP3 (ID3v2 ``CHAP``
#: frames). (FFmpeg's Ogg muxer writes Opus chapters a second late: not offered.)
CHAPTER_FORMATS = ("m4a", "mp3")


@dataclass(frozen=True)
class ChapterMark:
    """A chapter of an audio file: samples [start, end) of the audio written, and a title."""

    start: int
    end: int
    title: str


class _Sink:
    """A write-only, non-seekable file for PyAV: muxers then write a stream, never seek back."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def write(self, data: Any) -> int:
        self._buf += bytes(data)
        return len(data)

    def take(self) -> bytes:
        out = bytes(self._buf)
        self._buf.clear()
        return out


def _codec_rate(av: Any, codec: str, sample_rate: int) -> int:
    rates = av.codec.Codec(codec, "w").audio_rates
    if not rates or sample_rate in rates:
        return sample_rate
    higher = [r for r in rates if r >= sample_rate]
    return min(higher) if higher else max(rates)


class _AVEncoder:
    """One PyAV output container with one mono audio stream, fed float32 chunks."""

    def __init__(
        self,
        fmt: str,
        sample_rate: int,
        file: Any,
        streaming: bool,
        bit_rate: int | None,
        chapters: Sequence[ChapterMark] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        av = import_av()
        spec = _AV_CODECS[fmt]
        options = dict(spec.options, flush_packets="1") if streaming else {}
        if chapters and spec.container == "ipod":  # the length and the marks to the sample
            options["movie_timescale"] = str(sample_rate)
        try:
            self.container = av.open(
                file, mode="w", format=spec.container, container_options=options
            )
            rate = _codec_rate(av, spec.codec, sample_rate)
            self.stream = self.container.add_stream(spec.codec, rate=rate, layout="mono")
            if bit_rate or spec.bit_rate:
                self.stream.bit_rate = int(bit_rate or spec.bit_rate)
            for key, value in (metadata or {}).items():
                self.container.metadata[key] = value
            if chapters:  # the muxer lays out its chapter track when the header is written
                self.container.set_chapters(_av_chapters(chapters, sample_rate))
            self.container.start_encoding()  # the header goes out now, even if no audio follows
        except av.FFmpegError as e:
            raise AudioError(f"cannot start a {fmt} encoder: {ffmpeg_reason(e)}") from e
        self.av, self.fmt, self.sample_rate, self.pts = av, fmt, sample_rate, 0

    def encode(self, wav: np.ndarray | None) -> None:
        """Encode a float32 (n,) chunk; ``None`` flushes the encoder and closes the container."""
        try:
            if wav is None:
                self._mux(self.stream.encode(None))
                self.container.close()
                return
            for start in range(0, wav.size, _FRAME):
                part = np.ascontiguousarray(wav[None, start : start + _FRAME])
                frame = self.av.AudioFrame.from_ndarray(part, format="flt", layout="mono")
                frame.sample_rate = self.sample_rate
                frame.pts, frame.time_base = self.pts, Fraction(1, self.sample_rate)
                self.pts += part.shape[1]
                self._mux(self.stream.encode(frame))
        except self.av.FFmpegError as e:
            raise AudioError(f"{self.fmt} encoding failed: {ffmpeg_reason(e)}") from e

    def _mux(self, packets: list) -> None:
        for packet in packets:
            self.container.mux(packet)


def _av_chapters(chapters: Sequence[ChapterMark], sample_rate: int) -> list[dict[str, Any]]:
    return [
        {
            "id": n + 1,
            "start": c.start,
            "end": c.end,
            "time_base": Fraction(1, sample_rate),
            "metadata": {"title": c.title},
        }
        for n, c in enumerate(chapters)
    ]


def encode_audio(
    wav: Waveform, format: str, sample_rate: int = 24000, *, bit_rate: int | None = None
) -> bytes:
    """A whole audio file in memory.

    Args:
        wav: mono waveform (n,) or (1, n), float in [-1, 1] (numpy or torch).
        format: one of :data:`FORMATS` (or an alias such as ``"ogg"``).
        sample_rate: the waveform's rate in Hz.
        bit_rate: bits per second of lossy codecs (default: 64k for MP3/AAC, 48k for Opus).
    """
    fmt = normalize_format(format)
    rate = check_rate(sample_rate)
    data = as_mono(wav)
    if fmt == "pcm":
        return to_pcm16(data)
    if fmt == "wav":
        pcm = to_pcm16(data)
        return wav_header(rate, len(pcm)) + pcm
    buf = io.BytesIO()  # seekable: muxers write their final headers (FLAC, LAME, MP4 moov)
    enc = _AVEncoder(fmt, rate, buf, streaming=False, bit_rate=bit_rate)
    enc.encode(data)
    enc.encode(None)
    return buf.getvalue()


def save_audio(
    path_or_file: PathOrFile,
    wav: Waveform,
    sample_rate: int = 24000,
    format: str | None = None,
    *,
    bit_rate: int | None = None,
) -> None:
    """Write a waveform to a file (a path, or a binary file object).

    ``format`` defaults to the path's suffix (a file object's ``name``): see :data:`FORMATS`.
    ``wav`` is mono (n,) or (1, n), numpy or torch, float in [-1, 1], at ``sample_rate`` Hz.

    Raises:
        AudioError: unknown format, bad waveform; OSError: the file cannot be written.
    """
    if format is None:
        name = (
            path_or_file
            if isinstance(path_or_file, (str, os.PathLike))
            else getattr(path_or_file, "name", None)
        )
        if not isinstance(name, (str, os.PathLike)):
            raise AudioError("save_audio: give the format for a file object without a name")
        format = format_from_path(name)
    data = encode_audio(wav, format, sample_rate, bit_rate=bit_rate)
    if isinstance(path_or_file, (str, os.PathLike)):
        with open(path_or_file, "wb") as f:
            f.write(data)
    else:
        path_or_file.write(data)


def save_audio_chunks(
    path: str | os.PathLike,
    chunks: Iterable[Waveform],
    sample_rate: int = 24000,
    format: str | None = None,
    *,
    bit_rate: int | None = None,
    chapters: Sequence[ChapterMark] = (),
    metadata: Mapping[str, str] | None = None,
) -> int:
    """Write audio given as successive chunks (a book, too long to hold whole) to ``path``.

    The file is the one :func:`save_audio` writes for the chunks joined (final headers
    included: the sizes of WAV, MP3's LAME header, MP4's index). ``chapters``: marks in
    samples of the audio written, for the formats of :data:`CHAPTER_FORMATS`. ``metadata``:
    container tags such as ``title``, ``album``, ``artist`` (not in WAV or PCM).
    Returns the number of samples written.

    Raises:
        AudioError: unknown format, bad chunk, chapters for a format without them, or marks
            outside the audio written; OSError: the file cannot be written.
    """
    fmt = normalize_format(format) if format else format_from_path(path)
    rate = check_rate(sample_rate)
    if chapters and fmt not in CHAPTER_FORMATS:
        raise AudioError(f"{fmt} files carry no chapters: use {', '.join(CHAPTER_FORMATS)}")
    written = 0
    if fmt in ("wav", "pcm"):
        with open(path, "wb") as f:
            if fmt == "wav":
                f.write(wav_header(rate))
            for chunk in chunks:
                data = as_mono(chunk)
                f.write(to_pcm16(data))
                written += data.size
            if fmt == "wav":
                fix_wav_header(f)
        return written
    enc = _AVEncoder(fmt, rate, os.fspath(path), False, bit_rate, chapters, metadata)
    try:
        for chunk in chunks:
            data = as_mono(chunk)
            enc.encode(data)
            written += data.size
    except BaseException:
        enc.container.close()
        raise
    if any(c.end > written or c.start < 0 or c.start > c.end for c in chapters):
        enc.container.close()
        raise AudioError(f"chapter marks outside the {written} samples written")
    enc.encode(None)
    return written


class StreamEncoder:
    """Encode audio as it is produced: each :meth:`write` returns the bytes ready so far.

    The bytes of all :meth:`write` calls and of :meth:`close`, concatenated, are one playable
    file: WAV with a header of unknown size (0xFFFFFFFF), raw PCM, MP3 frames, Opus in Ogg
    pages, FLAC frames or AAC in ADTS frames. Encoders hold back up to a frame of audio, and
    :meth:`close` flushes it.

    >>> enc = StreamEncoder("mp3", 24000)
    >>> parts = [enc.write(chunk) for chunk in chunks]   # doctest: +SKIP
    >>> parts.append(enc.close())                        # doctest: +SKIP
    """

    def __init__(
        self, format: str, sample_rate: int = 24000, *, bit_rate: int | None = None
    ) -> None:
        self.format = normalize_format(format)
        self.sample_rate = check_rate(sample_rate)
        self.media_type = MEDIA_TYPES[self.format]
        self.closed = False
        self._sink = _Sink()
        self._av: _AVEncoder | None = None
        if self.format == "wav":
            self._sink.write(wav_header(self.sample_rate))
        elif self.format != "pcm":
            if not _AV_CODECS[self.format].streamable:
                raise AudioError(f"{self.format} cannot be streamed: use aac (ADTS) instead")
            self._av = _AVEncoder(
                self.format, self.sample_rate, self._sink, streaming=True, bit_rate=bit_rate
            )

    def write(self, chunk: Waveform) -> bytes:
        """Encode a chunk (n,) or (1, n); returns the bytes now ready (possibly none)."""
        if self.closed:
            raise AudioError("write() on a closed StreamEncoder")
        data = as_mono(chunk)
        if self._av is None:
            self._sink.write(to_pcm16(data))
        elif data.size:
            self._av.encode(data)
        return self._sink.take()

    def close(self) -> bytes:
        """Flush the encoder; returns the last bytes. Closing twice returns b''."""
        if self.closed:
            return b""
        self.closed = True
        if self._av is not None:
            self._av.encode(None)
        return self._sink.take()

    def __enter__(self) -> StreamEncoder:
        return self

    def __exit__(self, *exc: Any) -> None:
        if not self.closed:
            self.closed = True
            if self._av is not None and exc[0] is None:
                self._av.encode(None)
