"""The signal processing behind finishing, each step done by a library (docs/captions.md).

- :func:`time_stretch`: pitch-preserving tempo change and formant-preserving pitch shift with
  Rubber Band, through pedalboard (an optional extra: ``pip install 'chattts[stretch]'``).
- :func:`integrated_loudness`: ITU-R BS.1770-4 integrated loudness (K-weighting, 400 ms blocks,
  absolute and relative gates) with pyloudnorm.
- :func:`true_peak`: the peak of the waveform oversampled 4× with soxr (BS.1770's true-peak
  measure).

Every library is imported on first use. All waveforms are mono float32 (n,).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import MissingDependencyError

#: Inputs shorter than this get zeros appended before stretching: Rubber Band gives wrong
#: lengths for inputs of a few hundred samples (the padding is cut off again).
_STRETCH_MIN = 4096
#: BS.1770's gating block (seconds): shorter audio is measured as one zero-padded block.
_BLOCK = 0.4
#: Oversampling factor of the true-peak measure.
_OVERSAMPLE = 4


def _pedalboard() -> Any:
    try:
        import pedalboard
    except ImportError as e:
        raise MissingDependencyError(
            "tempo and pitch changes need pedalboard (Rubber Band, GPLv3): "
            "pip install 'chattts[stretch]' (or pip install 'pedalboard==0.9.*')"
        ) from e
    return pedalboard


def _pyloudnorm() -> Any:
    try:
        import pyloudnorm
    except ImportError as e:  # pragma: no cover - a default dependency
        raise MissingDependencyError(
            "loudness normalisation needs pyloudnorm: pip install 'pyloudnorm==0.2.*'"
        ) from e
    return pyloudnorm


def _soxr() -> Any:
    try:
        import soxr
    except ImportError as e:  # pragma: no cover - a default dependency
        raise MissingDependencyError(
            "true-peak measurement needs soxr: pip install 'soxr==1.1.*'"
        ) from e
    return soxr


def require_stretch() -> None:
    """Check, before any work, that tempo and pitch changes can run.

    Raises:
        MissingDependencyError: pedalboard is not installed (the message names the
        ``pip install`` that fixes it).
    """
    _pedalboard()


def stretched_length(n: int, tempo: float) -> int:
    """Samples that :func:`time_stretch` returns for ``n`` input samples: ``round(n / tempo)``."""
    return int(round(n / tempo))


def time_stretch(wav: np.ndarray, rate: int, tempo: float, pitch: float) -> np.ndarray:
    """Change tempo (pitch kept) and pitch (duration and formants kept) in one pass.

    Args:
        wav: float32 (n,) at ``rate`` Hz.
        tempo: speed factor; 2.0 plays twice as fast (half the duration).
        pitch: shift in semitones.

    Returns:
        float32 (round(n / tempo),): the length is exact for every n.
    """
    n_out = stretched_length(wav.size, tempo)
    if wav.size == 0 or n_out == 0:
        return np.zeros(n_out, dtype=np.float32)
    pedalboard = _pedalboard()
    pad = max(_STRETCH_MIN - wav.size, 0)
    padded = np.concatenate([wav, np.zeros(pad, dtype=np.float32)]) if pad else wav
    out = pedalboard.time_stretch(
        padded[None, :],
        float(rate),
        stretch_factor=float(tempo),
        pitch_shift_in_semitones=float(pitch),
        high_quality=True,
        preserve_formants=True,
    )[0]
    if out.size < n_out:
        out = np.concatenate([out, np.zeros(n_out - out.size, dtype=np.float32)])
    return np.ascontiguousarray(out[:n_out], dtype=np.float32)


def integrated_loudness(wav: np.ndarray, rate: int) -> float:
    """Integrated loudness in LUFS (ITU-R BS.1770-4), ``-inf`` for silence.

    Audio shorter than one 400 ms gating block is measured as one block padded with zeros,
    corrected by the padding's share (its mean square over its own length).
    """
    if wav.size == 0:
        return -math.inf
    block = int(math.ceil(_BLOCK * rate))
    data = wav.astype(np.float64)
    correction = 0.0
    if data.size < block:
        correction = 10.0 * math.log10(block / data.size)
        data = np.concatenate([data, np.zeros(block - data.size)])
    meter = _pyloudnorm().Meter(rate)  # a meter per call: it keeps state of its last call
    value = float(meter.integrated_loudness(data))
    return value + correction if math.isfinite(value) else -math.inf


def true_peak(wav: np.ndarray, rate: int) -> float:
    """True peak in dBTP: the highest |sample| of the waveform oversampled 4× (soxr, "HQ"),
    never below the sample peak; ``-inf`` for silence."""
    if wav.size == 0:
        return -math.inf
    up = _soxr().resample(wav.astype(np.float32), rate, _OVERSAMPLE * rate, quality="HQ")
    peak = max(float(np.abs(up).max()) if up.size else 0.0, float(np.abs(wav).max()))
    return 20.0 * math.log10(peak) if peak > 0 else -math.inf


def db_to_gain(db: float) -> float:
    """Decibels -> an amplitude factor."""
    return 10.0 ** (db / 20.0)
