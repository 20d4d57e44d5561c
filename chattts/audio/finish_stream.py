"""Finishing chunk by chunk, for streamed audio (docs/captions.md, "Streaming").

:class:`StreamFinisher` gives the same processing as :func:`~chattts.audio.finish.finish` with
a bounded delay. Two stages, each used only when needed:

- **stretch** (tempo or pitch): the input is cut into pieces at the quietest 10 ms inside the
  second half of each block, the first block ``first_block`` seconds long and each next one
  twice as long up to ``block`` (Rubber Band costs about 20 ms a call whatever the length, so
  long pieces keep the cost near a whole file's, short first ones keep the delay short). Each
  piece is stretched with ``context`` seconds of the audio around it, the context's output
  is dropped, and neighbouring pieces overlap by ``crossfade`` seconds with complementary
  raised-cosine fades. Output sample k still corresponds to input sample k·tempo, and the
  total length is exactly ``round(n / tempo)``, as for a whole file. Rubber Band's phases
  differ from a whole-file run, so samples differ; the spectrum, loudness and length do not
  (measured in tests/test_finish.py).
- **levels** (gain, loudness, ceiling, fades): audio is emitted ``level_block`` seconds at a
  time with at least as much held back as lookahead. The loudness is measured (BS.1770, all
  gates) on everything seen so far, again whenever that has grown by half, until
  ``loudness_window`` seconds have been seen, and then kept; the gain moves between blocks
  on a linear ramp in dB, so it never steps. The true-peak cap looks at the block and its
  lookahead and never rises again once lowered, so the ceiling holds before a peak arrives.
  A stream no longer than one block plus its lookahead is finished exactly as a whole file.

Delay before the first output: about ``first_block + context`` seconds of input when
stretching, plus ``2 × level_block`` seconds of output when a level is set.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import AudioError, InputTypeError, ParameterError
from . import dsp
from .finish import Finish, apply_fades, fade_curve, fade_samples
from .formats import Waveform, as_mono, check_rate

_EMPTY = np.zeros(0, dtype=np.float32)
_QUIET_FRAME = 0.01  # seconds: the frames among which a piece's cut point is chosen
# the loudness is measured again once the audio seen has grown by half since the last time
_REMEASURE = 1.5


def _seconds(name: str, value: float, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputTypeError(f"StreamFinisher {name} must be a number of seconds, not {value!r}")
    if not (math.isfinite(value) and low <= value <= high):
        raise ParameterError(
            f"StreamFinisher {name} must be between {low:g} and {high:g} s, not {value!r}"
        )
    return float(value)


class _StretchStage:
    """Tempo and pitch over pieces cut at quiet points, joined by crossfades."""

    def __init__(
        self, rate: int, spec: Finish, blocks: tuple[float, float], context: float, xfade: float
    ):
        self.rate, self.tempo, self.pitch = rate, spec.tempo, spec.pitch
        self.block = max(int(round(blocks[0] * rate)), 1)  # doubles after every piece
        self.max_block = max(int(round(blocks[1] * rate)), self.block)
        self.half = int(round(xfade * rate / 2))  # half the crossfade, in output samples
        # the context must cover the crossfade on both sides of a cut
        self.context = max(int(round(context * rate)), int(math.ceil(self.half * self.tempo)) + 2)
        self.buf = _EMPTY  # input from absolute sample buf_start on
        self.buf_start = 0
        self.total = 0  # input samples seen
        self.cut = 0  # input sample where the next piece starts
        self.tail: np.ndarray | None = None  # the previous piece's output around ``cut``

    def write(self, data: np.ndarray) -> np.ndarray:
        self.buf = np.concatenate([self.buf, data])
        self.total += data.size
        out = []
        while self.total - self.cut >= self.block + self.context:
            out.append(self._piece(self._quiet_point(), final=False))
            self.block = min(2 * self.block, self.max_block)
        return np.concatenate(out) if out else _EMPTY

    def close(self) -> np.ndarray:
        return self._piece(self.total, final=True)

    def _quiet_point(self) -> int:
        """The centre of the quietest 10 ms frame in the second half of the next block."""
        frame = max(int(_QUIET_FRAME * self.rate), 1)
        lo = self.cut + self.block // 2
        count = max((self.cut + self.block - lo) // frame, 1)
        seg = self.buf[lo - self.buf_start : lo - self.buf_start + count * frame]
        count = seg.size // frame
        if count == 0:
            return self.cut + self.block
        energy = np.square(seg[: count * frame].reshape(count, frame)).sum(axis=1)
        return lo + int(np.argmin(energy)) * frame + frame // 2

    def _piece(self, c: int, final: bool) -> np.ndarray:
        a = max(self.cut - self.context, 0)
        b = self.total if final else min(c + self.context, self.total)
        seg = self.buf[a - self.buf_start : b - self.buf_start]
        y = dsp.time_stretch(seg, self.rate, self.tempo, self.pitch)
        base = dsp.stretched_length(a, self.tempo)  # output index of y[0]
        head = 0 if self.tail is None else self.half
        start = dsp.stretched_length(self.cut, self.tempo) - head
        end = dsp.stretched_length(self.total if final else c, self.tempo)
        end += 0 if final else self.half
        part = y[start - base : end - base]
        if part.size < end - start:  # rounding at the very end: at most a sample or two
            part = np.concatenate([part, np.zeros(end - start - part.size, dtype=np.float32)])
        part = part.copy()
        if self.tail is not None and head:
            ramp = fade_curve(2 * head)
            part[: 2 * head] = self.tail * ramp[::-1] + part[: 2 * head] * ramp
        if final:
            self.tail = None
            emit = part
        else:
            self.tail = part[part.size - 2 * self.half :].copy()
            emit = part[: part.size - 2 * self.half]
        self.cut = c
        keep = max(self.cut - self.context, 0)
        self.buf = self.buf[keep - self.buf_start :]
        self.buf_start = keep
        return emit


class _LevelStage:
    """Gain, loudness and true-peak ceiling over blocks with lookahead, and the edge fades."""

    def __init__(self, rate: int, spec: Finish, block: float, window: float):
        self.rate, self.spec = rate, spec
        self.n_fade = int(round(spec.fade * rate))
        self.block = max(int(round(block * rate)), 1)
        self.look = max(self.block, 2 * self.n_fade)
        self.window = int(round(window * rate))
        self.held = _EMPTY
        self.emitted = 0
        self.seen: list[np.ndarray] = []  # the first ``window`` samples, for the loudness
        self.seen_n = 0
        self.measured_n = 0
        self.loudness = -math.inf
        self.cap = math.inf
        self.gain: float | None = None  # dB at the end of the last emitted sample

    def write(self, data: np.ndarray, final: bool = False) -> np.ndarray:
        self.held = np.concatenate([self.held, data])
        if self.seen_n < self.window and data.size:
            take = data[: self.window - self.seen_n]
            self.seen.append(take)
            self.seen_n += take.size
        out = []
        while self.held.size >= self.block + self.look:
            out.append(self._emit(self.block, final=False))
        if final:
            out.append(self._emit(self.held.size, final=True))
        return np.concatenate(out) if out else _EMPTY

    def _target(self, final: bool) -> float:
        wanted = self.spec.gain
        if self.spec.loudness is None:
            return wanted
        grown = self.seen_n >= _REMEASURE * self.measured_n or final
        if grown and self.seen_n > self.measured_n:
            self.seen = [np.concatenate(self.seen)] if self.seen else []
            self.loudness = (
                dsp.integrated_loudness(self.seen[0], self.rate) if self.seen else -math.inf
            )
            self.measured_n = self.seen_n
        if math.isfinite(self.loudness):
            wanted += self.spec.loudness - self.loudness
        return wanted

    def _emit(self, n: int, final: bool) -> np.ndarray:
        target = self._target(final)
        peak = dsp.true_peak(self.held[: n + self.look], self.rate)
        if math.isfinite(peak):
            self.cap = min(self.cap, self.spec.true_peak - peak)
        end = min(target, self.cap)
        start = end if self.gain is None else self.gain
        seg = self.held[:n].copy()
        if start == end:
            if end != 0.0:
                seg *= np.float32(dsp.db_to_gain(end))
        else:
            db = start + (end - start) * (np.arange(1, n + 1, dtype=np.float64) / n)
            seg *= np.power(10.0, db / 20.0).astype(np.float32)
        self.gain = end
        total = self.emitted + n
        if final:  # the whole length is known now: the fades of a whole file
            n_fade = fade_samples(self.spec, self.rate, total)
            if self.emitted == 0:
                apply_fades(seg, n_fade)
            elif n_fade:
                apply_fades(seg, min(n_fade, seg.size), head=False)
        elif self.emitted < self.n_fade:
            curve = fade_curve(self.n_fade)[self.emitted : min(total, self.n_fade)]
            seg[: curve.size] *= curve
        self.held = self.held[n:]
        self.emitted = total
        return seg


class StreamFinisher:
    """Finish audio chunk by chunk: :meth:`write` returns the finished audio ready so far,
    :meth:`close` the rest. The concatenated output has the length of a whole-file
    :func:`~chattts.audio.finish.finish` (``round(n / tempo)``) and no click at any join.

    Args:
        rate: sample rate in Hz.
        spec: what to do (``Finish()``: every chunk comes back unchanged, with no delay).
        first_block: seconds of input of the first stretched piece (0.05–10).
        block: the longest stretched piece, in seconds of input (``first_block``–30).
        context: seconds of input on each side of a piece that the stretcher sees (0–2).
        crossfade: seconds of overlap between stretched pieces (0–0.1).
        level_block: seconds of output per gain step, also the lookahead (0.05–10).
        loudness_window: seconds of audio over which the loudness is measured before the gain
            is kept (0.4–3600).

    >>> fin = StreamFinisher(24000, Finish(tempo=1.25, loudness=-16))
    >>> parts = [fin.write(chunk) for chunk in chunks]   # doctest: +SKIP
    >>> parts.append(fin.close())                        # doctest: +SKIP
    """

    def __init__(
        self,
        rate: int,
        spec: Finish,
        *,
        first_block: float = 0.5,
        block: float = 8.0,
        context: float = 0.1,
        crossfade: float = 0.01,
        level_block: float = 0.25,
        loudness_window: float = 10.0,
    ) -> None:
        if not isinstance(spec, Finish):
            raise InputTypeError(f"StreamFinisher takes a Finish, not {type(spec).__name__}")
        self.rate, self.spec, self.closed = check_rate(rate), spec, False
        first_block = _seconds("first_block", first_block, 0.05, 10.0)
        block = _seconds("block", block, first_block, 30.0)
        context = _seconds("context", context, 0.0, 2.0)
        crossfade = _seconds("crossfade", crossfade, 0.0, 0.1)
        level_block = _seconds("level_block", level_block, 0.05, 10.0)
        window = _seconds("loudness_window", loudness_window, 0.4, 3600.0)
        self._stretch = (
            _StretchStage(self.rate, spec, (first_block, block), context, crossfade)
            if spec.stretches
            else None
        )
        self._level = _LevelStage(self.rate, spec, level_block, window) if spec.active else None

    def write(self, chunk: Waveform) -> np.ndarray:
        """Add a chunk (n,) or (1, n); returns the finished float32 samples now ready."""
        if self.closed:
            raise AudioError("write() on a closed StreamFinisher")
        data = as_mono(chunk)
        if self._level is None:
            return data.copy()
        if self._stretch is not None:
            data = self._stretch.write(data)
        return self._level.write(data)

    def close(self) -> np.ndarray:
        """Flush: the last finished samples. Closing twice returns an empty array."""
        if self.closed:
            return _EMPTY.copy()
        self.closed = True
        if self._level is None:
            return _EMPTY.copy()
        rest = self._stretch.close() if self._stretch is not None else _EMPTY
        return self._level.write(rest, final=True)


__all__ = ["StreamFinisher"]
