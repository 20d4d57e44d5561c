"""Engine benchmark: speed, latency, memory and accuracy per backend and precision.

Usage (from the repository root)::

    python benchmarks/bench_engine.py                 # default modes, batches 1 and 8
    python benchmarks/bench_engine.py --modes int8 int8-torch --batches 1 --repeats 5

Modes (:data:`MODES`): ``float32`` (torch, reference-exact), ``bfloat16`` (torch), ``int8``
(what ``quantize="int8"`` runs on the CPU: ONNX Runtime), ``int8-spin`` (the same with
``ort_spinning=True``), ``int8-torch`` (torch's dynamic int8 kernels), ``float32-ort`` (the
ONNX graphs without quantisation).

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
* ``{"kind": "logits_error", "mode", "rel_error", "hidden_rel_error"}``: ‖l − l_f32‖ / ‖l_f32‖
  of the code-pass logits (and of the GPT's hidden states), teacher-forced on one
  float32-generated sequence.
* ``{"kind": "bandwidth", "gb_per_s", "int8_bytes_per_step", "limit_steps_per_s"}``: memory
  read bandwidth (a sum over 1 GiB with the benchmark's threads) and the batch-1 step rate it
  allows when every int8 weight of the converted graph is read once per step.
* ``{"kind": "under_load", "mode", "quiet", "loaded", "ratio"}``: batch-1 GPT steps/s with two
  busy threads in another process (started by the benchmark), against the same mode quiet.
* ``{"kind": "spinning", "spinning", "quiet", "loaded"}``: the ONNX Runtime int8 step alone
  (batch 1, steps/s) with its idle threads spinning or sleeping.
* ``{"kind": "summary", ...}``: the ratios of the targets (docs/engine.md), from this run.
* ``{"kind": "stream_error", "rel_error", ...}``: streamed audio (default settings,
  concatenated) against the non-streamed audio of the same seed, float32.
* ``{"kind": "join", "mode", "step_s", "join_step_s", "join_cost_s", "prefill_s", ...}``:
  continuous batching: the step of a batch of 7 decoding, the step in which an 8th row joins
  (its prompt prefilled on its own, then 8 rows sample), the prefill alone; the joined row's
  tokens and hidden states against the same row alone (medians).
* ``{"kind": "decode_threads", "threads", "first_chunk_s", "chunk_s"}``: decoding a streamed
  chunk's window (Decoder and Vocos, int8) on one thread and on the configured threads.

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


#: ``Chat.load`` engine keywords of each mode.
MODES = {
    "float32": {},
    "bfloat16": {"dtype": "bfloat16"},
    "int8": {"quantize": "int8"},
    "int8-spin": {"quantize": "int8", "ort_spinning": True},
    "int8-torch": {"quantize": "int8", "backend": "torch"},
    "float32-ort": {"backend": "onnxruntime"},
}


def load(root: str, mode: str):
    import chattts

    chat = chattts.Chat()
    chat.load(source="custom", custom_path=root, verify=False, raise_on_error=True, **MODES[mode])
    return chat


class BusyLoad:
    """Two busy threads in another process (hashing releases the GIL), while in a ``with``."""

    CODE = (
        "import hashlib, threading\n"
        "def spin():\n"
        "    data = bytes(1 << 16)\n"
        "    while True: hashlib.sha256(data).digest()\n"
        "for _ in range(2): threading.Thread(target=spin, daemon=True).start()\n"
        "threading.Event().wait()\n"
    )

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", self.CODE])
        time.sleep(1.0)
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


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
        if batch == 1 and args.under_load:
            with BusyLoad():
                loaded = [gpt_steps_per_s(chat, 1, args.steps) for _ in range(args.repeats)]
            quiet = statistics.median(sps)
            emit(
                kind="under_load",
                mode=args.worker,
                quiet=round(quiet, 2),
                loaded=round(statistics.median(loaded), 2),
                loaded_runs=[round(x, 2) for x in loaded],
                ratio=round(statistics.median(loaded) / quiet, 3),
            )
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
    """Code logits (S, 4, V) and hidden states (S, H) of every step when fed ``tokens``
    (S, 4), batch 1."""
    import torch

    m, passes = chat.models, chat.pipeline.passes
    embeds, mask = passes.code_inputs([TEXT], params(tokens.shape[0]))
    heads = m.engine.code_heads()
    with torch.inference_mode():
        gpt = m.engine.backend.open(1, embeds.shape[1] + tokens.shape[0])
        h = gpt.prefill(embeds, mask)
        out, hidden = [], []
        for i in range(tokens.shape[0]):
            out.append(heads.logits(h))
            hidden.append(h.float().clone())
            h = gpt.decode(heads.embed_tokens(tokens[i : i + 1])[:, None])
        gpt.close()
    return torch.stack(out), torch.cat(hidden)


def accuracy(args) -> None:
    """Logit errors of bfloat16 and int8, and the streaming error, against float32."""
    import numpy as np

    from chattts.pipeline import trim_silence
    from chattts.pipeline.passes import last

    f32 = load(args.root, "float32")
    steps = args.steps
    state = last(f32.pipeline.passes.code_steps([TEXT], params(steps, seed=3)))
    tokens = state.item_tokens(0).clone()
    ref, ref_h = teacher_forced_logits(f32, tokens)
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
    for mode in [m for m in args.modes if m != "float32"]:
        chat = load(args.root, mode)
        got, got_h = teacher_forced_logits(chat, tokens)
        err = float((got - ref).norm() / ref.norm())
        h_err = float((got_h - ref_h).norm() / ref_h.norm())
        agree = float((got.argmax(-1) == ref.argmax(-1)).float().mean())
        emit(
            kind="logits_error",
            mode=mode,
            rel_error=round(err, 5),
            hidden_rel_error=round(h_err, 5),
            argmax_agreement=round(agree, 3),
        )
        del chat


def bandwidth(args) -> None:
    """Read bandwidth with the benchmark's threads, and the int8 step rate it allows."""
    import torch

    from chattts.generation.ort_convert import DATA_FILE, converted_gpt

    if args.threads:
        torch.set_num_threads(args.threads)
    x = torch.ones(1 << 28)  # 1 GiB of float32
    x.sum()
    runs = []
    for _ in range(max(5, args.repeats)):
        start = time.perf_counter()
        x.sum()
        runs.append(x.numel() * 4 / (time.perf_counter() - start))
    gbs = statistics.median(runs)
    graph = converted_gpt(os.path.join(args.root, "asset", "gpt"), "int8")
    weight_bytes = os.path.getsize(os.path.join(os.path.dirname(graph.path), DATA_FILE))
    emit(
        kind="bandwidth",
        threads=torch.get_num_threads(),
        gb_per_s=round(gbs / 1e9, 2),
        int8_bytes_per_step=weight_bytes,
        limit_steps_per_s=round(gbs / weight_bytes, 1),
    )


def spinning(args) -> None:
    """The ONNX Runtime int8 step alone (batch 1), idle threads spinning or sleeping, quiet
    and under load."""
    import torch

    from chattts.config import read_gpt_json
    from chattts.generation.ort_backend import OrtBackend
    from chattts.generation.ort_convert import converted_gpt

    if args.threads:
        torch.set_num_threads(args.threads)
    gpt_dir = os.path.join(args.root, "asset", "gpt")
    config = read_gpt_json(os.path.join(gpt_dir, "config.json"))
    graph = converted_gpt(gpt_dir, "int8")
    embeds, steps = torch.randn(1, 40, config.hidden_size), torch.randn(1, 1, config.hidden_size)

    def rate(backend) -> float:
        session = backend.open(1, 40 + args.steps + 1)
        session.prefill(embeds, torch.ones(1, 40, dtype=torch.long))
        session.decode(steps)
        start = time.perf_counter()
        for _ in range(args.steps - 1):
            session.decode(steps)
            torch.randn(626 * 4).softmax(-1)  # torch work between steps, as in generation
        session.close()
        return (args.steps - 1) / (time.perf_counter() - start)

    for spin in (False, True):
        backend = OrtBackend.from_graph(graph.path, config, spinning=spin)
        rate(backend)
        quiet = statistics.median(rate(backend) for _ in range(args.repeats))
        with BusyLoad():
            loaded = statistics.median(rate(backend) for _ in range(args.repeats))
        emit(kind="spinning", spinning=spin, quiet=round(quiet, 1), loaded=round(loaded, 1))


def join_cost(args) -> None:
    """What one join costs on each mode (see the module docstring, ``join``)."""
    import torch

    from chattts.generation.sampling import ItemSampling

    if args.threads:
        torch.set_num_threads(args.threads)
    n = args.steps
    for mode in args.modes:
        chat = load(args.root, mode)
        engine = chat.models.engine
        prompt = chat.pipeline.passes.code_inputs([TEXT], params(n))[0][0]
        t = prompt.shape[0]
        heads = engine.code_heads()

        def row(seed: int) -> ItemSampling:  # EOS masked: every row runs n steps
            return ItemSampling(seed=seed, min_new_token=n, max_new_token=n)

        with engine.open_run(heads, 1, t + n) as run:
            alone = run.output(run.add(prompt, row(7)))
            while run.active:
                run.step()
        plain, joined, prefill = [], [], []
        with engine.open_run(heads, 8, t + 3 * n) as run:
            for seed in range(7):
                run.add(prompt, row(100 + seed))
            run.step()
            for _ in range(args.repeats + 1):
                for _ in range(4):
                    start = time.perf_counter()
                    run.step()
                    plain.append(time.perf_counter() - start)
                slot = run.add(prompt, row(7))
                start = time.perf_counter()
                run.step()
                joined.append(time.perf_counter() - start)
                run.remove(slot)
            slot = run.add(prompt, row(7))
            out = run.output(slot)
            while not out.finished:
                run.step()
        session = engine.backend.open(1, t + 1)
        mask = torch.ones(1, t, dtype=torch.long)
        with torch.inference_mode():
            for _ in range(args.repeats + 1):
                start = time.perf_counter()
                session.prefill(prompt[None], mask)
                prefill.append(time.perf_counter() - start)
                session.remove(0)
        session.close()
        step, join = statistics.median(plain[4:]), statistics.median(joined[1:])
        h_err = float((out.hiddens - alone.hiddens).norm() / alone.hiddens.norm())
        emit(
            kind="join",
            mode=mode,
            batch_before=7,
            prompt_tokens=t,
            step_s=round(step, 4),
            join_step_s=round(join, 4),
            join_cost_s=round(join - step, 4),
            prefill_s=round(statistics.median(prefill[1:]), 4),
            tokens_equal_solo=bool(torch.equal(out.tokens, alone.tokens)),
            hidden_rel_error_vs_solo=float(f"{h_err:.2e}"),
        )
        del chat, engine, session


def decode_threads(args) -> None:
    """Decoding a streamed chunk's window on one torch thread and on the configured ones."""
    import torch

    chat = load(args.root, "int8")
    passes, p = chat.pipeline.passes, params(8)
    hidden = chat.models.config.gpt.hidden_size
    first = p.stream_first_batch + p.stream_lookahead
    later = p.stream_context + p.stream_batch + p.stream_lookahead
    configured = args.threads or torch.get_num_threads()
    for threads in sorted({1, configured}):
        torch.set_num_threads(threads)
        out = {}
        for name, steps in (("first_chunk_s", first), ("chunk_s", later)):
            features = torch.randn(1, steps, hidden)
            passes.waveform(features, True)
            runs = []
            for _ in range(max(5, args.repeats)):
                start = time.perf_counter()
                passes.waveform(features, True)
                runs.append(time.perf_counter() - start)
            out[name] = round(statistics.median(runs), 4)
        emit(kind="decode_threads", threads=threads, first_steps=first, steps=later, **out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=os.path.join(CACHE, "full"))
    ap.add_argument(
        "--modes", nargs="*", choices=list(MODES), default=["float32", "int8-torch", "int8"]
    )
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--steps", type=int, default=96, help="code steps per item (fixed length)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=["bare", "accuracy", "bandwidth", "spinning", "join", "decode_threads"],
    )
    ap.add_argument(
        "--no-under-load",
        dest="under_load",
        action="store_false",
        help="skip the batch-1 run with a competing CPU load",
    )
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker == "bare":
        return bare_layers(args)
    if args.worker == "accuracy":
        return accuracy(args)
    if args.worker == "bandwidth":
        return bandwidth(args)
    if args.worker == "spinning":
        return spinning(args)
    if args.worker == "join":
        return join_cost(args)
    if args.worker == "decode_threads":
        return decode_threads(args)
    if args.worker:
        return run_mode(args)
    os.makedirs(CACHE, exist_ok=True)
    checkpoint(args.root)
    jobs = [j for j in ("bandwidth",) if j not in args.skip] + list(args.modes)
    jobs += [
        j for j in ("bare", "spinning", "accuracy", "join", "decode_threads") if j not in args.skip
    ]
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
        "--modes",
        *args.modes,
    ]
    if not args.under_load:
        common.append("--no-under-load")
    records = []
    for job in jobs:
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", job, *common]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        sys.stdout.write(proc.stdout)
        records += [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        if proc.returncode != 0:
            emit(kind="error", job=job, returncode=proc.returncode)
    summary(records)


def summary(records: list[dict]) -> None:
    """The targets' ratios (docs/engine.md, "ONNX Runtime"), from this run's records."""
    step = {(r["mode"], r["batch"]): r for r in records if r["kind"] == "mode"}
    out = {}
    b1, b1_torch = step.get(("int8", 1)), step.get(("int8-torch", 1))
    if b1 and b1_torch:
        out["int8_b1_vs_torch_int8"] = round(b1["gpt_steps_per_s"] / b1_torch["gpt_steps_per_s"], 3)
    bw = next((r for r in records if r["kind"] == "bandwidth"), None)
    if b1 and bw:
        out["int8_b1_vs_bandwidth_limit"] = round(
            b1["gpt_steps_per_s"] / bw["limit_steps_per_s"], 3
        )
    for r in records:
        if r["kind"] == "under_load":
            out[f"{r['mode']}_loaded_vs_quiet"] = r["ratio"]
        if r["kind"] == "memory":
            out[f"{r['mode']}_peak_rss_mb"] = r["peak_rss_mb"]
        if r["kind"] == "logits_error":
            out[f"{r['mode']}_logits_error"] = r["rel_error"]
    for (mode, batch), r in step.items():
        out[f"{mode}_b{batch}_rtf"] = r["rtf"]
        if batch == 1 and "first_chunk_s" in r:
            out[f"{mode}_first_chunk_s"] = r["first_chunk_s"]
    emit(kind="summary", **out)


if __name__ == "__main__":
    main()
