"""Finishing: tempo, pitch, gain, loudness normalisation and a true-peak ceiling, one
implementation for every front end (docs/captions.md, "Finishing").

Audio is mono float32 (n,) at ``rate`` Hz (24 kHz for the model). :class:`Finish` says what to
do; :func:`finish` does it to a whole waveform, :class:`~chattts.audio.finish_stream.StreamFinisher`
chunk by chunk. The order is fixed:

1. tempo and pitch together (Rubber Band through pedalboard, :mod:`.dsp`);
2. one gain: ``gain`` dB on top of the loudness normalisation (so ``loudness=-16, gain=-3``
   gives -19 LUFS), lowered where needed so the true peak stays at or below ``true_peak`` dBTP;
3. short raised-cosine fades of ``fade`` seconds at both ends.

``Finish()`` changes nothing: the ceiling and the fades only act when something else is
asked for (``Finish.active``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..errors import InputTypeError, ParameterError
from . import dsp
from .formats import Waveform, as_mono, check_rate

logger = logging.getLogger("chattts")

#: Allowed ranges, (low, high) inclusive, of the Finish fields.
RANGES: dict[str, tuple[float, float]] = {
    "tempo": (0.25, 4.0),
    "pitch": (-12.0, 12.0),
    "gain": (-60.0, 40.0),
    "loudness": (-70.0, 0.0),
    "true_peak": (-20.0, 0.0),
    "fade": (0.0, 1.0),
}
_UNITS = {"tempo": "", "pitch": " semitones", "gain": " dB", "loudness": " LUFS"}
_UNITS.update({"true_peak": " dBTP", "fade": " s"})


def _check(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputTypeError(f"Finish.{name} must be a number, not {value!r}")
    low, high = RANGES[name]
    if not (math.isfinite(value) and low <= value <= high):
        raise ParameterError(
            f"Finish.{name} must be between {low:g} and {high:g}{_UNITS[name]}, not {value!r}"
        )
    return float(value)


@dataclass(frozen=True)
class Finish:
    """What finishing does to a waveform; the defaults change nothing.

    Attributes:
        tempo: speed factor, 0.25–4 (2.0 = twice as fast, half the duration), pitch kept.
        pitch: pitch shift in semitones, −12–12, duration and formants kept.
        gain: level change in dB, −60–40 (after loudness normalisation, when both are set).
        loudness: target integrated loudness in LUFS (ITU-R BS.1770), −70–0; None: no
            normalisation.
        true_peak: ceiling in dBTP, −20–0: the gain finishing applies is lowered so that the
            4× oversampled peak stays at or below it (never raised: a target loudness that the
            ceiling does not allow is not reached).
        fade: seconds of raised-cosine fade-in and fade-out at the ends, 0–1.

    Raises:
        ParameterError: a value outside its range (the message names field and range).
        InputTypeError: a value that is not a number.
    """

    tempo: float = 1.0
    pitch: float = 0.0
    gain: float = 0.0
    loudness: Optional[float] = None
    true_peak: float = -1.0
    fade: float = 0.005

    def __post_init__(self) -> None:
        for name in RANGES:
            value = getattr(self, name)
            if name == "loudness" and value is None:
                continue
            object.__setattr__(self, name, _check(name, value))

    @property
    def stretches(self) -> bool:
        """Whether tempo or pitch change (the audio goes through Rubber Band)."""
        return self.tempo != 1.0 or self.pitch != 0.0

    @property
    def levels(self) -> bool:
        """Whether a gain or a loudness target is set."""
        return self.gain != 0.0 or self.loudness is not None

    @property
    def active(self) -> bool:
        """Whether finishing changes anything (False for ``Finish()``)."""
        return self.stretches or self.levels

    def length(self, n: int) -> int:
        """Samples of finished audio for ``n`` input samples: ``round(n / tempo)``."""
        return dsp.stretched_length(n, self.tempo)


def level_gain(wav: np.ndarray, rate: int, spec: Finish) -> float:
    """The gain in dB that :func:`finish` applies to ``wav`` (already stretched).

    ``spec.gain`` plus, with a loudness target, the difference between the target and the
    measured integrated loudness (no correction for silence, whose loudness is ``-inf``),
    capped at ``spec.true_peak − true peak of wav`` whenever finishing is active.
    """
    wanted = spec.gain
    if spec.loudness is not None:
        measured = dsp.integrated_loudness(wav, rate)
        if math.isfinite(measured):
            wanted += spec.loudness - measured
        else:
            logger.debug("finishing: silent audio, no loudness normalisation")
    peak = dsp.true_peak(wav, rate)
    ceiling = spec.true_peak - peak if math.isfinite(peak) else math.inf
    if ceiling < wanted:
        logger.debug(
            "finishing: gain %.2f dB capped at %.2f dB by the %.1f dBTP ceiling",
            wanted,
            ceiling,
            spec.true_peak,
        )
    return min(wanted, ceiling)


def fade_curve(n: int) -> np.ndarray:
    """A raised-cosine fade-in of ``n`` samples, float32 (n,), from near 0 to near 1."""
    if n <= 0:
        return np.zeros(0, dtype=np.float32)
    x = (np.arange(n, dtype=np.float64) + 0.5) / n
    return (0.5 - 0.5 * np.cos(np.pi * x)).astype(np.float32)


def fade_samples(spec: Finish, rate: int, n: int) -> int:
    """Samples of each edge fade: ``fade`` seconds, at most half of the ``n`` samples."""
    return min(int(round(spec.fade * rate)), n // 2)


def apply_fades(wav: np.ndarray, n_fade: int, head: bool = True, tail: bool = True) -> None:
    """Fade the first and/or last ``n_fade`` samples of ``wav`` in place."""
    if n_fade <= 0:
        return
    curve = fade_curve(n_fade)
    if head:
        wav[:n_fade] *= curve
    if tail:
        wav[wav.size - n_fade :] *= curve[::-1]


def finish(wav: Waveform, rate: int, spec: Finish) -> np.ndarray:
    """Finish a whole waveform.

    Args:
        wav: mono (n,) or (1, n), float in [-1, 1] (numpy or torch).
        rate: its sample rate in Hz.
        spec: what to do; ``Finish()`` returns the samples unchanged.

    Returns:
        float32 (round(n / spec.tempo),), a new array.

    Raises:
        AudioError: a waveform of another shape or with non-finite samples.
        MissingDependencyError: tempo or pitch asked for without pedalboard installed.
    """
    rate = check_rate(rate)
    data = as_mono(wav)
    if not isinstance(spec, Finish):
        raise InputTypeError(f"finish() takes a Finish, not {type(spec).__name__}")
    if not spec.active:
        return data.copy()
    out = dsp.time_stretch(data, rate, spec.tempo, spec.pitch) if spec.stretches else data.copy()
    gain = level_gain(out, rate, spec)
    if gain != 0.0:
        out *= np.float32(dsp.db_to_gain(gain))
    apply_fades(out, fade_samples(spec, rate, out.size))
    return out


__all__ = ["RANGES", "Finish", "apply_fades", "fade_curve", "finish", "level_gain"]
