"""Decoding any format FFmpeg reads, and resampling.

Decoding is bounded (docs/limits.md, "Audio input"): the stream's sample rate, channel count
and declared duration are checked from the container's header before anything is decoded, and
decoding stops as soon as more than ``max_seconds`` of audio came out, so neither a header
that lies (a WAV that declares 1 Hz) nor a long file (10 hours of Opus in 13 MB) can take more
memory than ``max_seconds`` of audio.
"""

from __future__ import annotations

import io
import os
from typing import Any, Optional

import numpy as np

from ..errors import AudioError, AudioFileNotFoundError
from .formats import (
    MAX_RATE,
    MIN_RATE,
    AudioSource,
    Waveform,
    as_mono,
    check_rate,
    ffmpeg_reason,
    import_av,
    normalize_format,
)

#: Longest audio :func:`load_audio` decodes unless told otherwise, in seconds (an hour at
#: 24 kHz is 346 MB of float32).
MAX_AUDIO_SECONDS = 3600.0
#: Most channels of a file read (they are averaged to mono).
MAX_CHANNELS = 64


def resample(wav: Waveform, orig_rate: int, new_rate: int) -> np.ndarray:
    """Resample a mono waveform with FFmpeg's resampler; float32 (round(n·new/orig),)."""
    data = as_mono(wav)
    orig_rate, new_rate = check_rate(orig_rate), check_rate(new_rate)
    if orig_rate == new_rate or data.size == 0:
        return data.copy()
    av = import_av()
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


def _read_source(source: AudioSource) -> tuple[Any, str | None]:
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


def _read_pcm(src: Any, max_samples: Optional[int], label: str) -> np.ndarray:
    limit = -1 if max_samples is None else 2 * max_samples + 2
    if isinstance(src, str):
        with open(src, "rb") as f:
            raw = f.read(limit)
    else:
        raw = src.read(limit)
    if max_samples is not None and len(raw) > 2 * max_samples:
        raise AudioError(f"{label} is longer than {max_samples} samples")
    if len(raw) % 2:
        raise AudioError("raw 16-bit PCM must have an even number of bytes")
    return np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0


def load_audio(
    path_or_bytes: AudioSource,
    sample_rate: int = 24000,
    *,
    format: str | None = None,
    max_seconds: Optional[float] = MAX_AUDIO_SECONDS,
) -> np.ndarray:
    """Read an audio file (any format FFmpeg reads) as mono float32 (n,) at ``sample_rate``.

    ``path_or_bytes``: a path, the file's bytes, or a binary file object. Channels are averaged
    and the audio resampled with FFmpeg's resampler. Raw PCM has no header: ``format="pcm"``
    (or a ``.pcm``/``.raw`` path) reads 16-bit little-endian mono taken to be at ``sample_rate``.
    ``max_seconds``: the longest audio accepted (None: no bound), checked against the header
    first and enforced while decoding (see the module's docstring).

    Raises:
        AudioFileNotFoundError: no such file; AudioError: not audio, not readable, a sample rate
        outside [1000, 384000] Hz, more than :data:`MAX_CHANNELS` channels, or longer than
        ``max_seconds``.
    """
    rate = check_rate(sample_rate)
    if max_seconds is not None and not max_seconds > 0:
        raise AudioError(f"max_seconds must be a positive number, not {max_seconds!r}")
    src, name = _read_source(path_or_bytes)
    label = name or "the audio data"
    if (
        format is None
        and isinstance(name, str)
        and os.path.splitext(name)[1].lower() in (".pcm", ".raw")
    ):
        format = "pcm"
    if format is not None and normalize_format(format) == "pcm":
        return _read_pcm(src, None if max_seconds is None else int(max_seconds * rate), label)
    if isinstance(src, io.BytesIO) and src.getbuffer().nbytes == 0:
        raise AudioError("cannot read audio from empty bytes")
    av = import_av()
    try:
        with av.open(src, mode="r") as container:
            if not container.streams.audio:
                raise AudioError(f"{label} holds no audio stream")
            stream = container.streams.audio[0]
            _check_header(container, stream, label, max_seconds)
            return _decode(av, container, stream, rate, _Budget(label, max_seconds))
    except av.FFmpegError as e:
        raise AudioError(f"cannot read audio from {label}: {ffmpeg_reason(e)}") from e


def _too_long(label: str, seconds: float, max_seconds: float) -> AudioError:
    return AudioError(
        f"{label} is {seconds:.1f} s long or more: at most {max_seconds:g} s of audio is read"
    )


def _check_header(container: Any, stream: Any, label: str, max_seconds: Optional[float]) -> None:
    """The stream's rate, channels and declared duration, before anything is decoded."""
    ctx = stream.codec_context
    declared = ctx.sample_rate or stream.sample_rate
    if declared and not MIN_RATE <= declared <= MAX_RATE:
        raise AudioError(
            f"{label}: its sample rate is {declared} Hz; audio files must be between "
            f"{MIN_RATE} and {MAX_RATE} Hz"
        )
    if ctx.channels > MAX_CHANNELS:
        raise AudioError(f"{label} has {ctx.channels} channels: at most {MAX_CHANNELS}")
    if max_seconds is None:
        return
    seconds = 0.0
    if stream.duration and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration:
        seconds = container.duration / 1_000_000  # FFmpeg's AV_TIME_BASE
    if seconds > max_seconds + 1:  # a second of slack for rounding in headers
        raise _too_long(label, seconds, max_seconds)


class _Budget:
    """Seconds of audio decoded so far; :class:`AudioError` once past ``max_seconds``."""

    def __init__(self, label: str, max_seconds: Optional[float]) -> None:
        self.label, self.max_seconds, self.seconds = label, max_seconds, 0.0

    def take(self, frame: Any) -> None:
        rate = frame.sample_rate
        if not MIN_RATE <= rate <= MAX_RATE:
            raise AudioError(f"{self.label}: a frame at {rate} Hz (audio is 1 to 384 kHz)")
        if frame.layout.nb_channels > MAX_CHANNELS:
            raise AudioError(f"{self.label}: a frame of more than {MAX_CHANNELS} channels")
        self.seconds += frame.samples / rate
        if self.max_seconds is not None and self.seconds > self.max_seconds:
            raise _too_long(self.label, self.seconds, self.max_seconds)


def _decode(av: Any, container: Any, stream: Any, rate: int, budget: _Budget) -> np.ndarray:
    resampler = None
    parts: list[np.ndarray] = []

    def take(frames: list) -> None:
        for f in frames:
            parts.append(f.to_ndarray().mean(axis=0, dtype=np.float32))

    for frame in container.decode(stream):
        budget.take(frame)  # stops decoding past max_seconds
        if resampler is None:
            resampler = av.AudioResampler(format="fltp", layout=frame.layout, rate=rate)
        take(resampler.resample(frame))
    if resampler is not None:
        take(resampler.resample(None))
    if not parts:
        return np.zeros(0, dtype=np.float32)
    return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)
