"""Finishing benchmark: its cost as a fraction of synthesis time, and streamed loudness.

Usage (from the repository root)::

    python benchmarks/bench_finish.py                    # assumed synthesis speeds
    python benchmarks/bench_finish.py --synthesis 0.3 0.8 --repeats 7
    python benchmarks/bench_finish.py --tiny             # also measure the tiny test model

Finishes 10 s and 60 s of synthetic speech (:func:`chattts.testing.speech_like`) with tempo
1.5, pitch +3 and loudness −16 LUFS, whole-file (:func:`chattts.audio.finish`) and streamed in
0.5 s chunks (:class:`chattts.audio.StreamFinisher`), and prints the median time over
``--repeats`` runs as a fraction of the synthesis time of the same audio. The synthesis time is
``--synthesis`` seconds per second of audio (default 0.3 and 0.8: the full-size int8 model on
the CPU, docs/engine.md), or with ``--tiny`` also measured on the tiny test model (a fixed
256 code steps), whose speed says nothing about the full-size model and swings with the
machine's load. The target is ≤ 5 %.

Then the streamed loudness against whole-file normalisation (target −18 LUFS) on 12 s of
speech: of an even level, and with a first sentence 6 dB quieter or louder.

One JSON object per line; each carries the 1-minute load average. Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from chattts.audio import Finish, StreamFinisher, dsp, finish  # noqa: E402
from chattts.testing import speech_like  # noqa: E402

RATE = 24000
SPEC = Finish(tempo=1.5, pitch=3.0, loudness=-16.0)


def load() -> float:
    return round(os.getloadavg()[0], 2)


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def stream(wav: np.ndarray, spec: Finish, chunk: float = 0.5) -> np.ndarray:
    fin, step = StreamFinisher(RATE, spec), int(chunk * RATE)
    out = [fin.write(wav[i : i + step]) for i in range(0, wav.size, step)]
    return np.concatenate([*out, fin.close()])


def tiny_rtf(repeats: int) -> float:
    """Seconds of synthesis per second of audio of the tiny test model (CPU, torch)."""
    import chattts

    chat = chattts.Chat()
    root = os.path.join(os.path.dirname(HERE), "tests", "fixtures", "tiny")
    chat.load(source="custom", custom_path=root, verify=False, device="cpu", raise_on_error=True)
    # a fixed length (EOS suppressed until then): 256 code steps, 5.5 s of audio
    params = chattts.InferCodeParams(manual_seed=1, min_new_token=256, max_new_token=256)
    text = "the quick brown fox jumps over the lazy dog while the engine keeps time"
    rtfs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        wavs = chat.infer([text], skip_refine_text=True, params_infer_code=params)
        rtfs.append((time.perf_counter() - t0) / max(wavs[0].size / RATE, 1e-3))
    return statistics.median(rtfs)


def cost(seconds: list[float], rtfs: dict[str, float], repeats: int) -> None:
    for length in seconds:
        wav = speech_like(length)
        finish(wav, RATE, SPEC)  # the first call imports and warms the libraries
        whole = median_time(lambda w=wav: finish(w, RATE, SPEC), repeats)
        streamed = median_time(lambda w=wav: stream(w, SPEC), repeats)
        for name, rtf in rtfs.items():
            synth = rtf * length
            row = {
                "kind": "cost",
                "audio_s": length,
                "synthesis": name,
                "synthesis_s": round(synth, 3),
                "whole_s": round(whole, 4),
                "whole_fraction": round(whole / synth, 4),
                "stream_s": round(streamed, 4),
                "stream_fraction": round(streamed / synth, 4),
                "load": load(),
            }
            print(json.dumps(row), flush=True)


def loudness_difference() -> None:
    spec = Finish(loudness=-18.0)
    for case, start_gain in (("even", 1.0), ("quiet start", 0.5), ("loud start", 2.0)):
        diffs = []
        for seed in range(4):
            wav = speech_like(12.0, seed=seed)
            wav[: 2 * RATE] *= start_gain
            whole = dsp.integrated_loudness(finish(wav, RATE, spec), RATE)
            streamed = dsp.integrated_loudness(stream(wav, spec, chunk=0.2), RATE)
            diffs.append(streamed - whole)
        row = {
            "kind": "stream_loudness",
            "case": case,
            "stream_minus_whole_lu": [round(d, 2) for d in diffs],
            "max_abs_lu": round(max(map(abs, diffs)), 2),
            "load": load(),
        }
        print(json.dumps(row), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, nargs="+", default=[10.0, 60.0])
    ap.add_argument("--synthesis", type=float, nargs="+", default=[0.3, 0.8])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tiny", action="store_true", help="also measure the tiny model's speed")
    args = ap.parse_args()
    rtfs = {f"assumed {r:g} s/s": r for r in args.synthesis}
    if args.tiny:
        rtfs["tiny model (measured)"] = tiny_rtf(args.repeats)
    print(json.dumps({"kind": "setup", "cpus": os.cpu_count(), "load": load()}), flush=True)
    cost(args.seconds, rtfs, args.repeats)
    loudness_difference()


if __name__ == "__main__":
    main()
