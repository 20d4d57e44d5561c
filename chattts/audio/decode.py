"""Decoding any format FFmpeg reads, and resampling."""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np

from ..errors import AudioError, AudioFileNotFoundError
from .formats import (
    AudioSource,
    Waveform,
    as_mono,
    check_rate,
    ffmpeg_reason,
    import_av,
    normalize_format,
)


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
    path_or_bytes: AudioSource, sample_rate: int = 24000, *, format: str | None = None
) -> np.ndarray:
    """Read an audio file (any format FFmpeg reads) as mono float32 (n,) at ``sample_rate``.

    ``path_or_bytes``: a path, the file's bytes, or a binary file object. Channels are averaged
    and the audio resampled with FFmpeg's resampler. Raw PCM has no header: ``format="pcm"``
    (or a ``.pcm``/``.raw`` path) reads 16-bit little-endian mono taken to be at ``sample_rate``.

    Raises:
        AudioFileNotFoundError: no such file; AudioError: not audio, or not readable.
    """
    rate = check_rate(sample_rate)
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
    av = import_av()
    label = name or "the audio data"
    try:
        with av.open(src, mode="r") as container:
            if not container.streams.audio:
                raise AudioError(f"{label} holds no audio stream")
            return _decode(av, container, container.streams.audio[0], rate)
    except av.FFmpegError as e:
        raise AudioError(f"cannot read audio from {label}: {ffmpeg_reason(e)}") from e


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
