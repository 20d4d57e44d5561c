"""Audio formats by name and suffix, waveform checks and the WAV header (no codec needed)."""

from __future__ import annotations

import os
import struct
from types import ModuleType
from typing import IO, TYPE_CHECKING, BinaryIO, Union

import numpy as np

from ..errors import AudioError

if TYPE_CHECKING:
    import torch

#: A file to write: a path or a binary file object.
PathOrFile = Union[str, "os.PathLike[str]", IO[bytes]]
#: A mono waveform: numpy (n,) or (1, n), float in [-1, 1] or int16, or a torch tensor of
#: either shape.
Waveform = Union[np.ndarray, "torch.Tensor"]
#: An audio file to read: a path, the file's bytes or a binary file object.
AudioSource = Union[str, "os.PathLike[str]", bytes, bytearray, BinaryIO]
#: Audio in any form the package accepts: a waveform or an audio file.
AudioLike = Union[Waveform, AudioSource]

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


def import_av() -> ModuleType:
    """The ``av`` module (PyAV)."""
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


def as_mono(wav: Waveform) -> np.ndarray:
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


#: The sample rates accepted, in Hz (of files read, and of waveforms written).
MIN_RATE, MAX_RATE = 1000, 384_000


def check_rate(sample_rate: object) -> int:
    """``sample_rate`` as an int, checked to lie in [1000, 384000] Hz (AudioError if not)."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)):
        raise AudioError(f"sample_rate must be an integer, not {sample_rate!r}")
    if not MIN_RATE <= int(sample_rate) <= MAX_RATE:
        raise AudioError(
            f"sample_rate must be between {MIN_RATE} and {MAX_RATE} Hz, not {sample_rate}"
        )
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


def ffmpeg_reason(e: Exception) -> str:
    """An FFmpeg error's reason, without PyAV's errno and file name decorations."""
    return str(getattr(e, "strerror", None) or e)
