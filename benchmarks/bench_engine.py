"""Engine benchmark: speed, latency, memory and accuracy of the precision modes.

Usage (from the repository root)::

    python benchmarks/bench_engine.py                 # every mode, batches 1 and 8
    python benchmarks/bench_engine.py --modes int8 --batches 1 --steps 64 --repeats 5

The first run builds a full-size random checkpoint under ``benchmarks/.cache/full`` (about
1.1 GB, git-ignored) with :func:`chattts.testing.make_random_checkpoint`. Every mode runs in a
fresh subprocess so that its peak RSS is its own. Output: one JSON object per line.

* ``{"kind": "mode", "mode", "batch", "gpt_steps_per_s", "rtf", "first_chunk_s", ...}``: the
  code pass at a fixed length (EOS suppressed), GPT steps/s per batch step; ``rtf`` = wall time
  of ``Chat.infer`` (code pass and decoding) / seconds of audio produced (all items);
  ``first_chunk_s``: time from ``infer(stream=True)`` to its first chunk (batch 1). Medians.
* ``{"kind": "memory", "mode", "peak_rss_mb", "import_rss_mb"}``: peak RSS of that process
  and its RSS after the imports (the torch wheel alone accounts for much of it).
* ``{"kind": "bare_layers", ...}``: steps/s of a bare float32 pass over the same 20 layers'
  matrices (no attention, norms or sampling): the floor the float32 step is measured against.
* ``{"kind": "logits_error", "mode", "rel_error"}``: ‖l − l_f32‖ / ‖l_f32‖ of the code-pass
  logits, teacher-forced on one float32-generated sequence.
* ``{"kind": "stream_error", "rel_error", ...}``: streamed audio (default settings,
  concatenated) against the non-streamed audio of the same seed, float32.

Timings depend on the load of the machine: each line carries the 1-minute load average.
Nothing here is asserted by the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.path.join(HERE, ".cache")
TEXT = "the quick brown fox jumps over the lazy dog while the engine keeps time"
SAMPLE_RATE = 24000


def checkpoint(root: str) -> str:
    """The full-size random checkpoint, built once."""
    if os.path.isfile(os.path.join(root, "chattts-random.json")):
        return root
    from chattts.testing import make_random_checkpoint

    tmp = root + ".partial"
    make_random_checkpoint(tmp, "full", seed=0)
    os.replace(tmp, root)
    return root


def emit(**record) -> None:
    record["load1"] = round(os.getloadavg()[0], 2)
    print(json.dumps(record), flush=True)


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def audio_seconds(steps: int) -> float:
    return (2 * steps - 1) * 256 / SAMPLE_RATE


def load(root: str, mode: str):
    import chattts

    chat = chattts.Chat()
    quantize = "int8" if mode == "int8" else None
    dtype = "bfloat16" if mode == "bfloat16" else "float32"
    chat.load(
        source="custom",
        custom_path=root,
        verify=False,
        dtype=dtype,
        quantize=quantize,
        raise_on_error=True,
    )
    return chat


def params(steps: int, seed: int = 1, **kw):
    import chattts

    return chattts.InferCodeParams(
        manual_seed=seed, min_new_token=steps, max_new_token=steps, show_tqdm=False, **kw
    )


def gpt_steps_per_s(chat, batch: int, steps: int) -> float:
    """Steps/s of the code pass from the end of step 1 (prefill excluded) to the last step."""
    start = None
    for state in chat.pipeline.passes.code_steps([TEXT] * batch, params(steps)):
        if state.step == 1:
            start = time.perf_counter()
    return (steps - 1) / (time.perf_counter() - start)


#: ``infer`` options that keep the measurement on the engine: no text normalisation (its
#: backends have their own start-up cost) and no voice carry-over between split sentences
#: (with ``split_text`` a list's first text would be synthesised twice).
ENGINE_ONLY = dict(skip_refine_text=True, split_text=False, do_text_normalization=False)


def infer_rtf(chat, batch: int, steps: int) -> float:
    start = time.perf_counter()
    wavs = chat.infer(
        [TEXT] * batch, max_split_batch=batch, params_infer_code=params(steps), **ENGINE_ONLY
    )
    took = time.perf_counter() - start
    assert len(wavs) == batch
    return took / (batch * audio_seconds(steps))


def first_chunk(chat, steps: int) -> float:
    start = time.perf_counter()
    stream = chat.infer([TEXT], stream=True, params_infer_code=params(steps), **ENGINE_ONLY)
    next(stream)
    took = time.perf_counter() - start
    stream.close()
    return took


def run_mode(args) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    import chattts  # noqa: F401 - counted in the import baseline

    base = rss_mb()
    t0 = time.perf_counter()
    chat = load(args.root, args.worker)
    load_s = time.perf_counter() - t0
    gpt_steps_per_s(chat, 1, 8)  # warm-up
    infer_rtf(chat, 1, 8)
    for batch in args.batches:
        sps = [gpt_steps_per_s(chat, batch, args.steps) for _ in range(args.repeats)]
        rtf = [infer_rtf(chat, batch, args.steps) for _ in range(args.repeats)]
        rec = dict(
            kind="mode",
            mode=args.worker,
            batch=batch,
            steps=args.steps,
            threads=torch.get_num_threads(),
            gpt_steps_per_s=round(statistics.median(sps), 2),
            gpt_steps_per_s_runs=[round(x, 2) for x in sps],
            rtf=round(statistics.median(rtf), 3),
            rtf_runs=[round(x, 3) for x in rtf],
        )
        if batch == 1:
            fc = [first_chunk(chat, args.steps) for _ in range(args.repeats)]
            rec["first_chunk_s"] = round(statistics.median(fc), 3)
            rec["first_chunk_runs"] = [round(x, 3) for x in fc]
        emit(**rec)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    emit(
        kind="memory",
        mode=args.worker,
        peak_rss_mb=round(peak),
        import_rss_mb=round(base),
        load_s=round(load_s, 1),
    )


def bare_layers(args) -> None:
    """Steps/s of F.linear over the 20 layers' float32 matrices (batch 1 and 8)."""
    import torch
    import torch.nn.functional as F

    if args.threads:
        torch.set_num_threads(args.threads)
    chat = load(args.root, "float32")
    mats = []
    for layer in chat.models.gpt.body.layers:
        attn, mlp = layer.self_attn, layer.mlp
        mats.append(
            [
                attn.qkv_proj.weight,
                attn.o_proj.weight,
                mlp.gate_up_proj.weight,
                mlp.down_proj.weight,
            ]
        )
    hidden = chat.models.gpt.hidden_size
    inter = mats[0][3].shape[1]

    def step(x, wide):
        for qkv, o, gu, down in mats:
            F.linear(x, qkv)
            x = x + F.linear(x, o)
            F.linear(x, gu)
            x = x + F.linear(wide, down)
        return x

    with torch.inference_mode():
        for batch in args.batches:
            x, wide = torch.randn(batch, hidden), torch.randn(batch, inter)
            step(x, wide)
            runs = []
            for _ in range(args.repeats):
                n, start = 10, time.perf_counter()
                for _ in range(n):
                    step(x, wide)
                runs.append(n / (time.perf_counter() - start))
            emit(
                kind="bare_layers",
                batch=batch,
                threads=torch.get_num_threads(),
                steps_per_s=round(statistics.median(runs), 2),
            )


def teacher_forced_logits(chat, tokens):
    """Code logits (S, 4, V) of every step when fed ``tokens`` (S, 4), batch 1."""
    import torch

    m, passes = chat.models, chat.pipeline.passes
    embeds, mask = passes.code_inputs([TEXT], params(tokens.shape[0]))
    heads = m.engine.code_heads()
    with torch.inference_mode():
        gpt = m.engine.backend.open(1, embeds.shape[1] + tokens.shape[0])
        h = gpt.prefill(embeds, mask)
        out = []
        for i in range(tokens.shape[0]):
            out.append(heads.logits(h))
            h = gpt.decode(heads.embed_tokens(tokens[i : i + 1])[:, None])
        gpt.close()
    return torch.stack(out)


def accuracy(args) -> None:
    """Logit errors of bfloat16 and int8, and the streaming error, against float32."""
    import numpy as np

    from chattts.passes import last
    from chattts.pipeline import trim_silence

    f32 = load(args.root, "float32")
    steps = args.steps
    state = last(f32.pipeline.passes.code_steps([TEXT], params(steps, seed=3)))
    tokens = state.item_tokens(0).clone()
    ref = teacher_forced_logits(f32, tokens)
    # streamed vs non-streamed, default streaming settings
    p = params(steps, seed=5)
    whole = f32.infer([TEXT], params_infer_code=p, **ENGINE_ONLY)[0]
    chunks = list(f32.infer([TEXT], stream=True, params_infer_code=p, **ENGINE_ONLY))
    joined = trim_silence(np.concatenate([c[0] for c in chunks]))
    n = min(joined.size, whole.size)
    emit(
        kind="stream_error",
        rel_error=float(np.linalg.norm(joined[:n] - whole[:n]) / np.linalg.norm(whole[:n])),
        same_length=bool(joined.size == whole.size),
        chunks=len(chunks),
        stream_first_batch=p.stream_first_batch,
        stream_batch=p.stream_batch,
        stream_lookahead=p.stream_lookahead,
        stream_context=p.stream_context,
    )
    del f32
    for mode in ("bfloat16", "int8"):
        chat = load(args.root, mode)
        got = teacher_forced_logits(chat, tokens)
        err = float((got - ref).norm() / ref.norm())
        agree = float((got.argmax(-1) == ref.argmax(-1)).float().mean())
        emit(kind="logits_error", mode=mode, rel_error=round(err, 5), argmax_agreement=agree)
        del chat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=os.path.join(CACHE, "full"))
    ap.add_argument("--modes", nargs="*", default=["float32", "bfloat16", "int8"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--steps", type=int, default=96, help="code steps per item (fixed length)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["bare", "accuracy"])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker == "bare":
        return bare_layers(args)
    if args.worker == "accuracy":
        return accuracy(args)
    if args.worker:
        return run_mode(args)
    os.makedirs(CACHE, exist_ok=True)
    checkpoint(args.root)
    jobs = list(args.modes)
    if "bare" not in args.skip:
        jobs.append("bare")
    if "accuracy" not in args.skip:
        jobs.append("accuracy")
    common = [
        "--root",
        args.root,
        "--steps",
        str(args.steps),
        "--repeats",
        str(args.repeats),
        "--threads",
        str(args.threads),
        "--batches",
        *map(str, args.batches),
    ]
    for job in jobs:
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", job, *common]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        sys.stdout.write(proc.stdout)
        if proc.returncode != 0:
            emit(kind="error", job=job, returncode=proc.returncode)


if __name__ == "__main__":
    main()
