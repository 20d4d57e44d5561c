"""Helpers shared by the server tests (tests/test_server.py, tests/test_ray.py): the server's
audio decoded back to samples, and the rule for "the same audio"."""

from __future__ import annotations

import numpy as np

from chattts.audio import load_audio

RATE = 24000
LSB = 1 / 32767  # one step of 16-bit PCM


def pcm(data: bytes) -> np.ndarray:
    """Raw 16-bit little-endian PCM -> float32 samples."""
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def decode(data: bytes, fmt: str) -> np.ndarray:
    """A response body of format ``fmt`` -> float32 samples at :data:`RATE`."""
    return pcm(data) if fmt == "pcm" else load_audio(data, RATE)


def assert_same_audio(a: np.ndarray, b: np.ndarray, what: str) -> None:
    """Same length, samples within 1e-3 of the peak (plus one 16-bit step of rounding)."""
    assert a.size == b.size, f"{what}: {a.size} samples != {b.size}"
    peak = float(np.abs(b).max()) if b.size else 0.0
    err = float(np.abs(a - b).max()) if a.size else 0.0
    assert err <= 1e-3 * peak + LSB, f"{what}: max error {err} (peak {peak})"
