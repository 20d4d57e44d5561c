"""Narration benchmark: a 10-minute book narrated end to end through ``chattts.narrate``.

Usage (from the repository root)::

    python benchmarks/bench_narrate.py                      # full-size random model, int8
    python benchmarks/bench_narrate.py --repeats 2 --no-compare
    python benchmarks/bench_narrate.py --model-dir tests/fixtures/tiny --steps 8 --quantize none

The book is ``benchmarks/data/narration_10min.md`` (about 1,500 words, three ``#`` chapters),
read as ``chattts narrate`` reads it: ``Narration(doc, out, NarrationSettings(...)).run(chat)``
with a random voice, no refine pass (as ``--no-refine``), chapter files (``--format``, FLAC by
default: lossless, so its files can be counted to the sample), an ``.m4b`` book, captions and
the manifest. Random weights end an item at a random step (or never), so every segment is
made exactly ``--steps`` code steps long (``min_new_token = max_new_token = N``: (2N − 1)·256
samples at 24 kHz); by default N is chosen so that the book, pauses included, lasts ten
minutes.

Without ``--model-dir`` the first run builds a full-size random checkpoint under
``benchmarks/.cache/full`` (about 1.1 GB, git-ignored) with
:func:`chattts.testing.make_random_checkpoint`. Every measurement runs in a fresh subprocess
(``--one narrate|infer``), so its peak RSS is its own; a first subprocess loads the model once
so that the int8 graph's conversion (cached on disk) is not measured. Output: one JSON object
per line, each with the 1-minute load average (``load1``).

* ``{"kind": "plan", "segments", "chapters", "steps", "book_s"...}``: what is narrated.
* ``{"kind": "narrate", "wall_s", "audio_s", "speech_s", "rtf", "rtf_speech", ...}``: the
  narration's wall time (``Narration`` built and run, the model already loaded), seconds of
  audio in the book (pauses included) and of speech, their ratios.
* ``{"kind": "narrate_memory", "peak_rss_mb", "load_rss_mb", "rss_after_batches_mb"}``: peak
  RSS of the process (``ru_maxrss``), RSS once the model is loaded, and after the first, the
  middle and the last batch (memory that grew with the book would show here).
* ``{"kind": "narrate_breakdown", ...}``: where the wall time went, in seconds: the code pass
  (``Chat.synthesize`` less decoding: text normalisation, prefill and GPT steps), decoding
  (DVAE decoder and Vocos), the progress store, chapter files, the book file, the model's
  identity (hashing the weights) and the rest. Measured by timing wrappers around those
  functions; they change nothing else.
* ``{"kind": "narrate_samples", "equal", ...}``: nothing lost: the segments' lengths and
  pauses read from the progress store, the manifest's samples, its chapters' samples, the
  chapter files decoded with :func:`chattts.audio.load_audio` and the ``.m4b``'s audio stream
  (PyAV) all agree to the sample; ``short_segments``: segments not (2N − 1)·256 samples long.
* ``{"kind": "infer", ...}``, ``{"kind": "infer_memory", ...}``: the previous path, in its
  own subprocess: ``Chat.infer`` of the whole text as one str (split into sentences, batches
  of four, the first sentence's voice carried over), same voice and N, no refine pass.
* ``{"kind": "summary", ...}``: the targets (aggregate RTF ≤ 0.3, peak RSS ≤ 1.5 GiB, sums
  equal) against this run (medians with ``--repeats`` > 1).

Timings depend on the load of the machine. Nothing here is asserted by the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import replace

# the same full-size random checkpoint, JSON lines and RSS as the engine benchmark
from bench_engine import checkpoint, emit, rss_mb

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.path.join(HERE, ".cache")
BOOK = os.path.join(HERE, "data", "narration_10min.md")
SAMPLE_RATE = 24000
HOP = 256
#: The book's length (seconds, pauses included) that the default ``--steps`` aims at.
TARGET_SECONDS = 600.0
TARGET_RTF = 0.3
TARGET_PEAK_RSS_MB = 1536.0  # 1.5 GiB, as ru_maxrss counts (KiB)
VOICE_SEED = 3


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def segment_samples(steps: int) -> int:
    """Samples of an item of ``steps`` code steps: (2·steps − 1)·256."""
    return (2 * steps - 1) * HOP


def load_book():
    from chattts.narrate import load_document

    return load_document(BOOK)


def book_plan(doc) -> tuple[int, float]:
    """The book's segments and seconds of pauses (the voice and model do not change them)."""
    from chattts.narrate import NarrationSettings, NarrationVoice, plan

    segments = [s for chapter in plan(doc, NarrationSettings(NarrationVoice())) for s in chapter]
    return len(segments), sum(round(s.pause * SAMPLE_RATE) for s in segments) / SAMPLE_RATE


def default_steps(segments: int, pause_s: float) -> int:
    """The N that makes ``segments`` items of (2N − 1)·256 samples, with the pauses, last
    about :data:`TARGET_SECONDS`."""
    per_segment = (TARGET_SECONDS - pause_s) * SAMPLE_RATE / segments
    return max(2, round((per_segment / HOP + 1) / 2))


def load_chat(args):
    import chattts

    chat = chattts.Chat()
    quantize = None if args.quantize == "none" else args.quantize
    chat.load(
        source="custom",
        custom_path=args.model_dir,
        verify=False,
        quantize=quantize,
        raise_on_error=True,
    )
    return chat


def code_params(chat, steps: int):
    import chattts

    return chattts.InferCodeParams(
        spk_emb=chat.sample_random_speaker(seed=VOICE_SEED),
        min_new_token=steps,
        max_new_token=steps,
        show_tqdm=False,
    )


# ---- timing wrappers ---------------------------------------------------------------------------


class Timers:
    """Seconds spent in wrapped functions, by name."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, fn: Callable, name: Callable[..., str]) -> Callable:
        def timed(*a, **k):
            start = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.seconds[name(*a, **k)] += time.perf_counter() - start

        return timed

    def wrap_iter(self, fn: Callable, name: str) -> Callable:
        def timed(*a, **k) -> Iterator:
            start = time.perf_counter()
            try:
                yield from fn(*a, **k)
            finally:
                self.seconds[name] += time.perf_counter() - start

        return timed


def time_decoding(chat, timers: Timers) -> None:
    audio = chat.pipeline.models.audio
    audio.decode_items = timers.wrap(audio.decode_items, lambda *a, **k: "decode")


def time_narration(chat, timers: Timers) -> None:
    """Wrap what a narration spends its time in (see the module docstring)."""
    from chattts.narrate import book, narration, store

    time_decoding(chat, timers)
    chat.synthesize = timers.wrap_iter(chat.synthesize, "synthesize")
    store.ProgressStore.put = timers.wrap(store.ProgressStore.put, lambda *a, **k: "store")

    def file_kind(path, *a, **k) -> str:
        return "book_file" if os.path.basename(path).startswith("book") else "chapter_files"

    book.write_audio = timers.wrap(book.write_audio, file_kind)
    narration.model_identity = timers.wrap(narration.model_identity, lambda *a: "model_identity")


# ---- the measurements (each in its own subprocess) ---------------------------------------------


def run_narrate(args) -> None:
    from chattts.narrate import Narration, NarrationSettings, NarrationVoice, OutputOptions

    doc = load_book()
    start = time.perf_counter()
    chat = load_chat(args)
    load_s, load_rss = time.perf_counter() - start, rss_mb()
    timers = Timers()
    time_narration(chat, timers)
    voice = NarrationVoice(chat.sample_random_speaker(seed=VOICE_SEED), label=f"seed_{VOICE_SEED}")
    settings = NarrationSettings(voice, code=code_params(chat, args.steps))
    output = OutputOptions(format=args.format, book="m4b")
    batch = {} if args.batch is None else {"batch": args.batch}
    rss: list[tuple[float, float]] = []  # (RSS, peak RSS) before the first batch and after each

    def progress(_) -> None:
        rss.append((rss_mb(), peak_rss_mb()))

    start = time.perf_counter()
    with Narration(doc, args.out, settings, output, **batch) as n:
        manifest = n.run(chat, progress)
        wall, batch_size = time.perf_counter() - start, n.batch
        speech = n.progress.rendered_seconds  # every segment: the folder was empty
    peak = peak_rss_mb()
    audio_s = manifest["samples"] / SAMPLE_RATE
    emit(
        kind="narrate",
        wall_s=round(wall, 1),
        audio_s=round(audio_s, 2),
        speech_s=round(speech, 2),
        rtf=round(wall / audio_s, 3),
        rtf_speech=round(wall / speech, 3),
        segments=manifest["segments"],
        chapters=len(manifest["chapters"]),
        steps=args.steps,
        batch=batch_size,
        quantize=args.quantize,
        format=args.format,
        load_s=round(load_s, 1),
        threads=torch_threads(),
    )
    emit(
        kind="narrate_memory",
        peak_rss_mb=round(peak),
        load_rss_mb=round(load_rss),
        rss_after_batches_mb=[round(r) for r, _ in rss[1:]],
        peak_after_batches_mb=[round(p) for _, p in rss[1:]],
    )
    emit_breakdown(timers, wall, batches=len(rss) - 1, steps=args.steps, speech=speech)
    check_samples(chat, doc, settings, manifest, args)


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def emit_breakdown(timers: Timers, wall: float, batches: int, steps: int, speech: float) -> None:
    """Where the wall time went; ``batches`` × ``steps``: the code pass's batch steps (every
    item runs ``steps``)."""
    s = dict(timers.seconds)
    decode = s.get("decode", 0.0)
    parts = {
        "code_pass_s": s.get("synthesize", 0.0) - decode,
        "decode_s": decode,
        "store_s": s.get("store", 0.0),
        "chapter_files_s": s.get("chapter_files", 0.0),
        "book_file_s": s.get("book_file", 0.0),
        "model_identity_s": s.get("model_identity", 0.0),
    }
    parts["other_s"] = wall - sum(parts.values())
    rates = {
        "code_steps": batches * steps,
        "code_steps_per_s": round(batches * steps / parts["code_pass_s"], 2),
        "decode_speech_s_per_s": round(speech / decode, 1),
    }
    emit(
        **rates,
        kind="narrate_breakdown",
        wall_s=round(wall, 1),
        **{k: round(v, 1) for k, v in parts.items()},
    )


def check_samples(chat, doc, settings, manifest: dict, args) -> None:
    """The segments' lengths and pauses against the manifest, the files and the book."""
    import av

    from chattts.audio import load_audio
    from chattts.narrate import ProgressStore, model_identity, plan
    from chattts.narrate.book import pause_samples

    rate = manifest["sample_rate"]
    chapters = plan(doc, replace(settings, model=model_identity(chat)))
    with ProgressStore(args.out) as store:
        lengths = [[store.segment(s.id).samples for s in chapter] for chapter in chapters]
    pauses = [[pause_samples(s, rate) for s in chapter] for chapter in chapters]
    from_segments = [sum(a) + sum(b) for a, b in zip(lengths, pauses, strict=True)]
    in_manifest = [c["samples"] for c in manifest["chapters"]]
    in_files = [
        load_audio(os.path.join(args.out, c["file"]), rate, max_seconds=None).size
        for c in manifest["chapters"]
    ]
    with av.open(os.path.join(args.out, manifest["book"]["file"])) as f:
        stream = f.streams.audio[0]
        in_book = int(stream.duration * stream.time_base * rate)
    expected = segment_samples(args.steps)
    totals = {
        "segments_and_pauses": sum(from_segments),
        "manifest": manifest["samples"],
        "manifest_chapters": sum(in_manifest),
        "chapter_files": sum(in_files),
        "book_m4b": in_book,
    }
    emit(
        kind="narrate_samples",
        equal=len(set(totals.values())) == 1 and from_segments == in_manifest == in_files,
        **totals,
        per_chapter={"segments": from_segments, "manifest": in_manifest, "files": in_files},
        segments=sum(len(x) for x in lengths),
        segment_samples=expected,
        short_segments=sum(n != expected for chapter in lengths for n in chapter),
    )


def run_infer(args) -> None:
    """The previous path: ``Chat.infer`` of the whole text as one str."""
    doc = load_book()
    text = "\n".join(p for chapter in doc.chapters for p in chapter.paragraphs)
    start = time.perf_counter()
    chat = load_chat(args)
    load_s, load_rss = time.perf_counter() - start, rss_mb()
    pieces = len(chat.pipeline.prepare(text))
    timers = Timers()
    time_decoding(chat, timers)
    params = code_params(chat, args.steps)
    start = time.perf_counter()
    (wav,) = chat.infer(text, skip_refine_text=True, params_infer_code=params)
    wall = time.perf_counter() - start
    peak = peak_rss_mb()
    audio_s = wav.size / SAMPLE_RATE
    decode = timers.seconds["decode"]
    batches = 1 + -(-pieces // 4)  # the first piece alone (its voice carried over), then by 4
    emit(
        kind="infer",
        wall_s=round(wall, 1),
        audio_s=round(audio_s, 2),
        rtf=round(wall / audio_s, 3),
        pieces=pieces,
        steps=args.steps,
        samples=int(wav.size),
        expected_samples=pieces * segment_samples(args.steps),
        code_pass_s=round(wall - decode, 1),
        decode_s=round(decode, 1),
        code_steps=batches * args.steps,
        code_steps_per_s=round(batches * args.steps / (wall - decode), 2),
        quantize=args.quantize,
        load_s=round(load_s, 1),
        threads=torch_threads(),
    )
    emit(kind="infer_memory", peak_rss_mb=round(peak), load_rss_mb=round(load_rss))


def run_warmup(args) -> None:
    """Load the model once, so that the int8 graph is converted (and cached) before any
    measurement."""
    start = time.perf_counter()
    load_chat(args)
    emit(kind="warmup", load_s=round(time.perf_counter() - start, 1))


# ---- the parent --------------------------------------------------------------------------------


def child(args, what: str, out: str) -> list[dict]:
    cmd = [sys.executable, os.path.abspath(__file__), "--one", what, "--out", out]
    cmd += ["--model-dir", args.model_dir, "--steps", str(args.steps)]
    cmd += ["--quantize", args.quantize, "--format", args.format]
    if args.batch is not None:
        cmd += ["--batch", str(args.batch)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    sys.stdout.write(proc.stdout)
    sys.stdout.flush()
    if proc.returncode != 0:
        emit(kind="error", job=what, returncode=proc.returncode)
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def medians(records: list[dict]) -> dict[str, dict]:
    """Per kind, the median of each numeric field over the repeats."""
    by_kind: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_kind[r["kind"]].append(r)
    out = {}
    for kind, rs in by_kind.items():
        first = rs[0].items()
        numeric = [k for k, v in first if isinstance(v, (int, float)) and not isinstance(v, bool)]
        row = {k: round(statistics.median(r[k] for r in rs), 3) for k in numeric if k != "load1"}
        row.update({k: all(r[k] for r in rs) for k, v in first if isinstance(v, bool)})
        row["load1_runs"] = [r["load1"] for r in rs]
        row.update({k: v for k, v in rs[0].items() if k not in row})
        row["runs"] = len(rs)
        out[kind] = row
    return out


def summary(rows: dict[str, dict]) -> None:
    out: dict[str, object] = {}
    narrate, memory = rows.get("narrate"), rows.get("narrate_memory")
    samples = rows.get("narrate_samples")
    if narrate:
        out["rtf"], out["rtf_target"] = narrate["rtf"], TARGET_RTF
        out["rtf_met"] = narrate["rtf"] <= TARGET_RTF
    if memory:
        out["peak_rss_mb"], out["peak_rss_target_mb"] = memory["peak_rss_mb"], TARGET_PEAK_RSS_MB
        out["peak_rss_met"] = memory["peak_rss_mb"] <= TARGET_PEAK_RSS_MB
    if samples:
        out["sums_equal"] = samples["equal"]
    infer, infer_memory = rows.get("infer"), rows.get("infer_memory")
    if infer and narrate:
        out["infer_rtf"] = infer["rtf"]
        out["narrate_rtf_speech_vs_infer"] = round(narrate["rtf_speech"] / infer["rtf"], 3)
    if infer_memory:
        out["infer_peak_rss_mb"] = infer_memory["peak_rss_mb"]
    emit(kind="summary", **out)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model-dir", help="model root (default: the full-size random model)")
    ap.add_argument("--steps", type=int, help="code steps of every segment (default: 10 min)")
    ap.add_argument("--batch", type=int, help="Narration's batch (default: its own)")
    ap.add_argument("--quantize", choices=["int8", "none"], default="int8")
    ap.add_argument("--format", default="flac", help="chapter files' format (default flac)")
    ap.add_argument("--repeats", type=int, default=1, help="runs of each measurement (median)")
    ap.add_argument("--out", help="output folder, kept (default: a temporary one, removed)")
    ap.add_argument("--no-compare", dest="compare", action="store_false", help="skip Chat.infer")
    ap.add_argument("--one", choices=["narrate", "infer", "warmup"], help=argparse.SUPPRESS)
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    if args.one:
        return {"narrate": run_narrate, "infer": run_infer, "warmup": run_warmup}[args.one](args)
    if args.model_dir is None:
        os.makedirs(CACHE, exist_ok=True)
        args.model_dir = checkpoint(os.path.join(CACHE, "full"))
    segments, pause_s = book_plan(load_book())
    args.steps = args.steps or default_steps(segments, pause_s)
    book_s = (segments * segment_samples(args.steps)) / SAMPLE_RATE + pause_s
    with open(BOOK, encoding="utf-8") as f:
        words = len(f.read().split())
    emit(kind="plan", segments=segments, steps=args.steps, book_s=round(book_s, 1), words=words)
    out = args.out or tempfile.mkdtemp(prefix="chattts-bench-narrate-")
    records: list[dict] = []
    try:
        child(args, "warmup", out)
        for i in range(args.repeats):
            records += child(args, "narrate", os.path.join(out, f"narrate-{i + 1}"))
            if args.compare:
                records += child(args, "infer", out)
    finally:
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)
    rows = medians(records)
    if args.repeats > 1:
        for kind, row in rows.items():
            emit(**{**row, "kind": f"{kind}_median"})
    summary(rows)


if __name__ == "__main__":
    main()
