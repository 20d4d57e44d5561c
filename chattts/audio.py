"""Audio files in and out: save, load, encode in memory, and encode incrementally for streaming.

Built on PyAV (FFmpeg). Formats, by name (and the file suffixes that select them):

=========  ==========================================  ========================  =============
name       what is written                             suffixes                  streams as
=========  ==========================================  ========================  =============
``wav``    RIFF WAVE, 16-bit PCM, mono                 ``.wav``                  unknown-size
                                                                                 header + PCM
``mp3``    MPEG audio layer III (LAME)                 ``.mp3``                  MP3 frames
``opus``   Opus in Ogg                                 ``.opus``, ``.ogg``       Ogg pages
``flac``   FLAC, 16-bit                                ``.flac``                 FLAC frames
``aac``    AAC-LC in ADTS                              ``.aac``                  ADTS frames
``m4a``    AAC-LC in MP4                               ``.m4a``, ``.mp4``        (not streamable)
``pcm``    raw 16-bit little-endian PCM, no header     ``.pcm``, ``.raw``        PCM
=========  ==========================================  ========================  =============

Waveforms are mono float arrays in [-1, 1]: 1-D numpy arrays, (1, n) arrays, or torch tensors of
either shape (int16 arrays are read as PCM). A codec that does not support the sample rate gets
the audio resampled to the nearest rate it supports (Opus: 8, 12, 16, 24 or 48 kHz), and every
decoder gives back what :func:`load_audio` resamples to the rate asked for.

Codec delays: MP3 (whole files), Opus and M4A record their encoder delay, so decoded audio has
the original length (up to a frame of padding at the end); ADTS has no place for it, so decoded
AAC starts with the encoder's 1024 samples of priming, and a streamed MP3 (no LAME header) with
about 1100 samples of it.
"""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass, field
from fractions import Fraction
from typing import IO, Any, Union

import numpy as np

from .errors import ChatTTSError

PathOrFile = Union[str, "os.PathLike[str]", IO[bytes]]

#: Format names accepted by the encoders, plus aliases.
FORMATS: tuple[str, ...] = ("wav", "mp3", "opus", "flac", "aac", "m4a", "pcm")
_ALIASES = {"ogg": "opus", "adts": "aac", "mp4": "m4a", "raw": "pcm", "wave": "wav"}
_SUFFIXES = {
    ".wav": "wav",
    ".wave": "wav",
    ".mp3": "mp3",
    ".opus": "opus",
    ".ogg": "opus",
    ".oga": "opus",
    ".flac": "flac",
    ".aac": "aac",
    ".adts": "aac",
    ".m4a": "m4a",
    ".mp4": "m4a",
    ".pcm": "pcm",
    ".raw": "pcm",
}

#: HTTP media types of the formats.
MEDIA_TYPES: dict[str, str] = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "flac": "audio/flac",
    "aac": "audio/aac",
    "m4a": "audio/mp4",
    "pcm": "audio/pcm",
}

_FRAME = 1 << 15  # samples per frame handed to PyAV when encoding a whole waveform


class AudioError(ChatTTSError, ValueError):
    """Audio that cannot be read, written or encoded (bad file, shape, format...)."""


class AudioFileNotFoundError(AudioError, FileNotFoundError):
    """An audio file that does not exist."""


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


def _import_av() -> Any:
    try:
        import av
    except ImportError as e:  # pragma: no cover - av is a dependency
        raise AudioError("audio encoding needs PyAV: pip install 'av==18.1.*'") from e
    return av


def normalize_format(format: str) -> str:
    """A format name or alias (``"ogg"``, ``".mp3"``, ``"MP3"``) -> one of :data:`FORMATS`."""
    if not isinstance(format, str):
        raise AudioError(f"an audio format must be a string, not {type(format).__name__}")
    name = format.strip().lower().lstrip(".")
    name = _ALIASES.get(name, name)
    if name not in FORMATS:
        raise AudioError(
            f"unknown audio format {format!r}: use one of {', '.join(FORMATS)} (or ogg, aac)"
        )
    return name


def format_from_path(path: str | os.PathLike) -> str:
    """The format that a file name's suffix selects (``out.ogg`` -> ``"opus"``)."""
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix not in _SUFFIXES:
        raise AudioError(
            f"cannot tell the audio format of {os.fspath(path)!r} from its suffix: use one of "
            f"{', '.join(sorted(_SUFFIXES))} or give the format"
        )
    return _SUFFIXES[suffix]


def as_mono(wav: Any) -> np.ndarray:
    """A waveform (n,) or (1, n), numpy or torch, float or int16 -> float32 (n,).

    Raises:
        AudioError: another shape, another dtype, or non-finite samples.
    """
    if hasattr(wav, "detach") and hasattr(wav, "cpu"):  # a torch tensor, without importing torch
        wav = wav.detach().cpu()
        wav = wav.float().numpy() if wav.is_floating_point() else wav.numpy()
    try:
        arr = np.asarray(wav)
    except Exception as e:
        raise AudioError(f"cannot read a waveform from {type(wav).__name__}") from e
    if arr.dtype != np.int16 and arr.dtype.kind != "f":
        raise AudioError(f"a waveform must hold floats (or int16), not {arr.dtype}")
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 1:
        raise AudioError(f"a waveform must be mono, of shape (n,) or (1, n), not {arr.shape}")
    if arr.dtype == np.int16:
        return arr.astype(np.float32) / 32768.0
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise AudioError("the waveform holds non-finite samples (NaN or infinity)")
    return arr


def _check_rate(sample_rate: Any) -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)):
        raise AudioError(f"sample_rate must be an integer, not {sample_rate!r}")
    if not 1000 <= int(sample_rate) <= 384_000:
        raise AudioError(f"sample_rate must be between 1000 and 384000 Hz, not {sample_rate}")
    return int(sample_rate)


def to_pcm16(wav: np.ndarray) -> bytes:
    """float32 (n,) in [-1, 1] -> 16-bit little-endian PCM bytes (clipped)."""
    pcm = np.clip(np.rint(wav * 32767.0), -32768, 32767).astype("<i2")
    return pcm.tobytes()


def wav_header(sample_rate: int, data_bytes: int | None = None) -> bytes:
    """44-byte header of a 16-bit mono WAV file; ``None``: unknown size (0xFFFFFFFF sizes)."""
    riff = 0xFFFFFFFF if data_bytes is None else 36 + data_bytes
    data = 0xFFFFFFFF if data_bytes is None else data_bytes
    # RIFF size, WAVE, fmt chunk (PCM, mono, rate, byte rate, block align, 16 bits), data size
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        riff,
        b"WAVE",
        b"fmt ",
        16,
        1,
        1,
        sample_rate,
        2 * sample_rate,
        2,
        16,
        b"data",
        data,
    )


def fix_wav_header(file: IO[bytes]) -> None:
    """Write the real sizes into a streamed WAV file (seekable, opened for update, e.g. 'r+b')."""
    end = file.seek(0, os.SEEK_END)
    data_bytes = max(end - 44, 0)
    file.seek(4)
    file.write(min(36 + data_bytes, 0xFFFFFFFF).to_bytes(4, "little"))
    file.seek(40)
    file.write(min(data_bytes, 0xFFFFFFFF).to_bytes(4, "little"))
    file.seek(0, os.SEEK_END)


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


def _why(e: Exception) -> str:
    """An FFmpeg error's reason, without PyAV's errno and file name decorations."""
    return str(getattr(e, "strerror", None) or e)


def _codec_rate(av: Any, codec: str, sample_rate: int) -> int:
    rates = av.codec.Codec(codec, "w").audio_rates
    if not rates or sample_rate in rates:
        return sample_rate
    higher = [r for r in rates if r >= sample_rate]
    return min(higher) if higher else max(rates)


class _AVEncoder:
    """One PyAV output container with one mono audio stream, fed float32 chunks."""

    def __init__(
        self, fmt: str, sample_rate: int, file: Any, streaming: bool, bit_rate: int | None
    ) -> None:
        av = _import_av()
        spec = _AV_CODECS[fmt]
        options = dict(spec.options, flush_packets="1") if streaming else {}
        try:
            self.container = av.open(
                file, mode="w", format=spec.container, container_options=options
            )
            rate = _codec_rate(av, spec.codec, sample_rate)
            self.stream = self.container.add_stream(spec.codec, rate=rate, layout="mono")
            if bit_rate or spec.bit_rate:
                self.stream.bit_rate = int(bit_rate or spec.bit_rate)
            self.container.start_encoding()  # the header goes out now, even if no audio follows
        except av.FFmpegError as e:
            raise AudioError(f"cannot start a {fmt} encoder: {_why(e)}") from e
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
            raise AudioError(f"{self.fmt} encoding failed: {_why(e)}") from e

    def _mux(self, packets: list) -> None:
        for packet in packets:
            self.container.mux(packet)


def encode_audio(
    wav: Any, format: str, sample_rate: int = 24000, *, bit_rate: int | None = None
) -> bytes:
    """A whole audio file in memory.

    Args:
        wav: mono waveform (n,) or (1, n), float in [-1, 1] (numpy or torch).
        format: one of :data:`FORMATS` (or an alias such as ``"ogg"``).
        sample_rate: the waveform's rate in Hz.
        bit_rate: bits per second of lossy codecs (default: 64k for MP3/AAC, 48k for Opus).
    """
    fmt = normalize_format(format)
    rate = _check_rate(sample_rate)
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
    wav: Any,
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
        self.sample_rate = _check_rate(sample_rate)
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

    def write(self, chunk: Any) -> bytes:
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


def resample(wav: Any, orig_rate: int, new_rate: int) -> np.ndarray:
    """Resample a mono waveform with FFmpeg's resampler; float32 (round(n·new/orig),)."""
    data = as_mono(wav)
    orig_rate, new_rate = _check_rate(orig_rate), _check_rate(new_rate)
    if orig_rate == new_rate or data.size == 0:
        return data.copy()
    av = _import_av()
    resampler = av.AudioResampler(format="flt", layout="mono", rate=new_rate)
    frame = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(data[None]), format="flt", layout="mono"
    )
    frame.sample_rate = orig_rate
    frames = resampler.resample(frame) + resampler.resample(None)
    out = np.concatenate([f.to_ndarray().reshape(-1) for f in frames]) if frames else data[:0]
    return _fit(out, round(data.size * new_rate / orig_rate))


def _fit(wav: np.ndarray, n: int) -> np.ndarray:
    if wav.size >= n:
        return np.ascontiguousarray(wav[:n], dtype=np.float32)
    return np.concatenate([wav, np.zeros(n - wav.size, dtype=np.float32)])


def _read_source(source: Any) -> tuple[Any, str | None]:
    """-> (what PyAV opens, the file name if any). Raises on missing files."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise AudioFileNotFoundError(f"audio file not found: {path}")
        return path, path
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(source)), None
    if hasattr(source, "read"):
        return source, getattr(source, "name", None)
    raise AudioError(
        f"load_audio takes a path, bytes or a binary file object, not {type(source).__name__}"
    )


def _read_pcm(src: Any) -> np.ndarray:
    if isinstance(src, str):
        with open(src, "rb") as f:
            raw = f.read()
    else:
        raw = src.read()
    if len(raw) % 2:
        raise AudioError("raw 16-bit PCM must have an even number of bytes")
    return np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0


def load_audio(
    path_or_bytes: Any, sample_rate: int = 24000, *, format: str | None = None
) -> np.ndarray:
    """Read an audio file (any format FFmpeg reads) as mono float32 (n,) at ``sample_rate``.

    ``path_or_bytes``: a path, the file's bytes, or a binary file object. Channels are averaged
    and the audio resampled with FFmpeg's resampler. Raw PCM has no header: ``format="pcm"``
    (or a ``.pcm``/``.raw`` path) reads 16-bit little-endian mono taken to be at ``sample_rate``.

    Raises:
        AudioFileNotFoundError: no such file; AudioError: not audio, or not readable.
    """
    rate = _check_rate(sample_rate)
    src, name = _read_source(path_or_bytes)
    if (
        format is None
        and isinstance(name, str)
        and os.path.splitext(name)[1].lower() in (".pcm", ".raw")
    ):
        format = "pcm"
    if format is not None and normalize_format(format) == "pcm":
        return _read_pcm(src)
    if isinstance(src, io.BytesIO) and src.getbuffer().nbytes == 0:
        raise AudioError("cannot read audio from empty bytes")
    av = _import_av()
    label = name or "the audio data"
    try:
        with av.open(src, mode="r") as container:
            if not container.streams.audio:
                raise AudioError(f"{label} holds no audio stream")
            return _decode(av, container, container.streams.audio[0], rate)
    except av.FFmpegError as e:
        raise AudioError(f"cannot read audio from {label}: {_why(e)}") from e


def _decode(av: Any, container: Any, stream: Any, rate: int) -> np.ndarray:
    resampler = None
    parts: list[np.ndarray] = []

    def take(frames: list) -> None:
        for f in frames:
            parts.append(f.to_ndarray().mean(axis=0, dtype=np.float32))

    for frame in container.decode(stream):
        if resampler is None:
            resampler = av.AudioResampler(format="fltp", layout=frame.layout, rate=rate)
        take(resampler.resample(frame))
    if resampler is not None:
        take(resampler.resample(None))
    if not parts:
        return np.zeros(0, dtype=np.float32)
    return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)


__all__ = [
    "FORMATS",
    "MEDIA_TYPES",
    "AudioError",
    "AudioFileNotFoundError",
    "StreamEncoder",
    "as_mono",
    "encode_audio",
    "fix_wav_header",
    "format_from_path",
    "load_audio",
    "normalize_format",
    "resample",
    "save_audio",
    "wav_header",
]
