"""Tempo and pitch libraries compared: pedalboard (Rubber Band) against librosa + soxr.

Usage (from the repository root; librosa is not a dependency of chattts)::

    pip install 'pedalboard==0.9.*' 'librosa==0.11.*'
    python benchmarks/bench_stretch_libs.py

For each library, on 24 kHz audio:

* ``length``: output length error (%) for tempo 0.5, 1.5, 2.0 on 10 s of synthetic speech;
* ``tone``: the pitch error (cents) of a 220 Hz tone shifted +3 and −5 semitones, and kept
  through tempo 1.5;
* ``lsd``: log-spectral distance (dB) to the ideal rendering of the same synthetic voice
  (:func:`chattts.testing.speech_like` with ``tempo``/``pitch``: the contours played faster,
  the pitch moved, the formants kept); two renderings that differ only in their harmonics'
  phases are 1.4 dB apart, the floor of this measure;
* ``onset``: where a tone that starts at 1 s lands after tempo 0.5 (ms from 2 s): smearing
  of onsets shows as an early start;
* ``speed``: seconds for tempo 1.5 and pitch +3 on 10 s (median of 5), and the first call
  (on 1 s) in a fresh process: the library's imports and any JIT compilation;
* ``size``: megabytes installed by the library and the packages it brings.

One JSON object per line with the 1-minute load average. Nothing here is asserted.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

RATE = 24000
# the distributions each choice installs beyond what chattts already has
PACKAGES = {
    "pedalboard": ["pedalboard"],
    "librosa": [
        "librosa",
        "numba",
        "llvmlite",
        "scikit-learn",
        "joblib",
        "soundfile",
        "audioread",
        "pooch",
        "lazy_loader",
        "decorator",
        "msgpack",
        "threadpoolctl",
        "soxr",
    ],
}


def pedalboard_fn(wav: np.ndarray, tempo: float, pitch: float) -> np.ndarray:
    import pedalboard

    return pedalboard.time_stretch(
        wav[None], RATE, stretch_factor=tempo, pitch_shift_in_semitones=pitch
    )[0]


def librosa_fn(wav: np.ndarray, tempo: float, pitch: float) -> np.ndarray:
    import librosa

    if tempo != 1.0:
        wav = librosa.effects.time_stretch(wav, rate=tempo)
    if pitch:
        wav = librosa.effects.pitch_shift(wav, sr=RATE, n_steps=pitch, res_type="soxr_hq")
    return wav


LIBS = {"pedalboard": pedalboard_fn, "librosa": librosa_fn}


def tone(freq: float, seconds: float) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * freq * np.arange(int(seconds * RATE)) / RATE)).astype("f4")


def frequency(wav: np.ndarray) -> float:
    mid = wav[wav.size // 4 : 3 * wav.size // 4].astype(np.float64)
    mid *= np.hanning(mid.size)
    spec = np.abs(np.fft.rfft(mid, 1 << 22))
    k = int(np.argmax(spec))
    a, b, c = np.log(spec[k - 1 : k + 2])
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * RATE / (1 << 22)


def lsd(a: np.ndarray, b: np.ndarray) -> float:
    n = min(a.size, b.size)
    idx = np.arange(1024)[None, :] + 256 * np.arange((n - 1024) // 256)[:, None]
    win = np.hanning(1024)
    sa, sb = (np.abs(np.fft.rfft(x[:n][idx] * win, axis=1)) for x in (a, b))
    floor = 1e-4 * sb.max()
    la, lb = (20 * np.log10(np.maximum(s, floor)) for s in (sa, sb))
    active = lb.max(axis=1) > 20 * np.log10(sb.max()) - 40
    return float(np.sqrt(((la - lb) ** 2).mean(axis=1))[active].mean())


def size_mb(dists: list[str]) -> float:
    total = 0
    for name in dists:
        try:
            files = md.distribution(name).files or []
        except md.PackageNotFoundError:
            continue
        total += sum(f.size or 0 for f in files)
    return round(total / 1e6, 1)


def cold_start(name: str) -> float:
    code = (
        "import time, numpy as np; t=time.perf_counter();"
        f"import benchmarks.bench_stretch_libs as b; b.LIBS[{name!r}]"
        "(np.zeros(24000, 'f4') + 0.1, 1.5, 3.0); print(time.perf_counter() - t)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=os.path.dirname(HERE)
    )
    return round(float(out.stdout.strip().splitlines()[-1]), 3)


def measure(name: str) -> dict:
    from chattts.testing import speech_like

    fn = LIBS[name]
    speech = speech_like(10.0)
    row: dict = {"kind": "library", "library": name}
    row["length_error_pct"] = {
        t: round(100 * (fn(speech, t, 0).size / (speech.size / t) - 1), 3) for t in (0.5, 1.5, 2.0)
    }
    cents = {f"pitch {p:+g}": fn(tone(220, 3), 1.0, p) for p in (3.0, -5.0)}
    cents = {
        k: 1200 * np.log2(frequency(v) / (220 * 2 ** (float(k[6:]) / 12))) for k, v in cents.items()
    }
    cents["tempo 1.5"] = 1200 * np.log2(frequency(fn(tone(220, 3), 1.5, 0)) / 220)
    row["tone_error_cents"] = {k: round(float(v), 2) for k, v in cents.items()}
    cases = [(0.5, 0.0), (1.5, 0.0), (2.0, 0.0), (1.0, 3.0), (1.0, -5.0), (1.5, 3.0)]
    row["lsd_db"] = {
        f"{t:g}/{p:+g}": round(lsd(fn(speech, t, p), speech_like(10.0, tempo=t, pitch=p)), 2)
        for t, p in cases
    }
    burst = np.zeros(3 * RATE, np.float32)
    burst[RATE : 2 * RATE] = tone(220, 1.0)
    out = fn(burst, 0.5, 0)
    row["onset_ms_tempo_0.5"] = round(1000 * (np.argmax(np.abs(out) > 0.05) / RATE - 2.0), 1)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        fn(speech, 1.5, 3.0)
        times.append(time.perf_counter() - t0)
    row["speed_s_10s"] = round(statistics.median(times), 4)
    row["first_call_s"] = cold_start(name)
    row["installed_mb"] = size_mb(PACKAGES[name])
    row["load"] = round(os.getloadavg()[0], 2)
    return row


def main() -> None:
    from chattts.testing import speech_like

    print(
        json.dumps(
            {
                "kind": "floor",
                "lsd_db_phases_only": round(lsd(speech_like(10, seed=1), speech_like(10)), 2),
            }
        )
    )
    for name in LIBS:
        print(json.dumps(measure(name)), flush=True)


if __name__ == "__main__":
    main()
