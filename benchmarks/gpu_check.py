"""The CUDA path, checked and measured on a machine with a GPU (run by benchmarks/gpu_check.sh).

1. conformance on CUDA: the tiny fixture's cases in float32 (codes equal, audio within the
   fixture's tolerance) and in bfloat16 (close: the share of equal codes, the audio's error);
2. ``compile=True`` (the fixed-shape, CUDA-graph decode step) against the eager step;
3. ``use_flash_attn=True``: the prefill's hidden states against SDPA's;
4. speed on the full-size random model: batch 1 and batch 8 real-time factors, and the time to
   the first streamed chunk of one request while 7 others generate.

Prints one line per figure and writes them to ``OUT/gpu_check.json``. ``--device cpu`` runs the
same checks on the CPU with a short model, to check the script itself.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time

import numpy as np
import torch

import chattts
from chattts.testing import make_random_checkpoint

HERE = os.path.dirname(os.path.abspath(__file__))
TINY = os.path.join(HERE, "..", "tests", "fixtures", "tiny")
RATE = 24000


def load(root: str, device: str, **engine) -> chattts.Chat:
    chat = chattts.Chat()
    chat.load(source="custom", custom_path=root, verify=False, device=device,
              raise_on_error=True, **engine)  # fmt: skip
    return chat


def trim(wav: np.ndarray) -> np.ndarray:
    loud = np.flatnonzero(np.abs(wav) > 1e-5)
    return wav[loud[0] : loud[-1] + 1] if loud.size else wav[:0]


def conformance(device: str, figures: dict) -> None:
    """The fixture's skip-refine case in float32 (exact) and bfloat16 (close)."""
    from safetensors.torch import load_file

    with open(os.path.join(TINY, "expected", "cases.json"), encoding="utf-8") as f:
        cases = json.load(f)
    want = load_file(os.path.join(TINY, "expected", "tensors.safetensors"))
    case = cases["infer.skip_refine.decoder_1"]
    spk = cases["speaker"]["spk_emb"]
    raw = dict(case["params_infer_code"], spk_emb=spk)
    for dtype in ("float32", "bfloat16"):
        chat = load(TINY, device, dtype=dtype)
        params = chattts.InferCodeParams(show_tqdm=False, **raw)
        wavs = chat.infer(case["texts"], skip_refine_text=True, split_text=False,
                          do_text_normalization=False, params_infer_code=params)  # fmt: skip
        errors = []
        for i, wav in enumerate(wavs):
            ref = trim(want[f"infer.skip_refine.decoder_1.wav{i}"].numpy())
            n = min(ref.size, wav.size)  # bfloat16 may draw other codes, so other lengths
            errors.append(float(np.abs(wav[:n] - ref[:n]).max() / (np.abs(ref).max() + 1e-9)))
        figures[f"conformance_{dtype}_max_rel_error"] = max(errors)
        print(f"conformance {dtype}: max relative error {max(errors):.2e}", flush=True)
    # once bfloat16 draws one other code the audio differs whole, so its closeness is the
    # share of codes it draws as float32 does, and the first step where they part
    a = code_ids(load(TINY, device), 5, 32)
    b = code_ids(load(TINY, device, dtype="bfloat16"), 5, 32)
    same = (a == b).all(dim=-1)
    figures["bfloat16_codes_equal"] = float(same.float().mean())
    figures["bfloat16_first_difference"] = int(same.int().argmin()) if not same.all() else None
    print(
        f"bfloat16: codes equal to float32 {figures['bfloat16_codes_equal']:.3f} "
        f"(first difference at step {figures['bfloat16_first_difference']})",
        flush=True,
    )


def code_ids(chat: chattts.Chat, seed: int, steps: int) -> torch.Tensor:
    from chattts.pipeline.passes import last

    params = chattts.InferCodeParams(
        spk_emb=chat.sample_random_speaker(seed), manual_seed=seed, show_tqdm=False,
        min_new_token=steps, max_new_token=steps,
    )  # fmt: skip
    state = last(chat.pipeline.passes.code_steps(["hello world, checking the engine"], params))
    return state.tokens[0, :steps].cpu()


def compiled_and_flash(root: str, device: str, steps: int, figures: dict) -> None:
    eager = load(root, device)
    ref = code_ids(eager, 3, steps)
    compiled = load(root, device, compile=True)
    t0 = time.perf_counter()
    got = code_ids(compiled, 3, steps)
    figures["compile_first_call_s"] = time.perf_counter() - t0
    figures["compile_codes_equal"] = float((got == ref).float().mean())
    print(f"compile=True: codes equal to eager {figures['compile_codes_equal']:.3f}", flush=True)
    if device != "cuda":
        return
    bf = load(root, device, dtype="bfloat16")
    flash = load(root, device, dtype="bfloat16", use_flash_attn=True)
    a, b = code_ids(bf, 4, steps), code_ids(flash, 4, steps)
    figures["flash_codes_equal"] = float((a == b).float().mean())
    print(f"use_flash_attn: codes equal to SDPA {figures['flash_codes_equal']:.3f}", flush=True)


def rtf(chat: chattts.Chat, batch: int, steps: int, repeats: int) -> float:
    texts = [f"sentence number {i} for the speed check" for i in range(batch)]
    params = chattts.InferCodeParams(
        spk_emb=chat.sample_random_speaker(1), manual_seed=1, show_tqdm=False,
        min_new_token=steps, max_new_token=steps,
    )  # fmt: skip
    chat.infer(texts[:1], skip_refine_text=True, split_text=False, params_infer_code=params)
    times = []  # after one untimed call (CUDA's and the kernels' first-use costs)
    for _ in range(repeats):
        t0 = time.perf_counter()
        wavs = chat.infer(texts, skip_refine_text=True, split_text=False, params_infer_code=params)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) / (sum(w.size for w in wavs) / RATE))
    return statistics.median(times)


def ttfa_under_load(chat: chattts.Chat, steps: int, repeats: int) -> float:
    """First streamed chunk of one request while 7 others run (server scheduling)."""
    from chattts.pipeline.assembler import SpeechChunk
    from chattts.pipeline.scheduler import DONE, SpeechScheduler, Ticket
    from chattts.pipeline.speech import SpeechRequest, plan_speech

    sched = SpeechScheduler(chat.pipeline, max_batch=8, max_new_token=steps)

    def submit(text: str, seed: int, first: list) -> threading.Event:
        req = SpeechRequest.of(text, seed=seed, max_new_token=steps)
        items = plan_speech(chat.pipeline, req, lambda s: chat.speech.voice_fields(s, seed))
        done, t0 = threading.Event(), time.perf_counter()

        def sink(x: object) -> None:
            if isinstance(x, SpeechChunk) and x.audio.size and not first:
                first.append(time.perf_counter() - t0)
            if x is DONE or isinstance(x, Exception):
                done.set()

        sched.submit(Ticket(items, req, sink))
        return done

    out = []
    try:
        for r in range(repeats):
            load_done = [submit(f"background request {i}", 100 + i, []) for i in range(7)]
            time.sleep(0.5)
            first: list = []
            submit("the measured request", r, first).wait(600)
            for d in load_done:
                d.wait(600)
            out.append(first[0])
    finally:
        sched.stop()
    return statistics.median(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--root", help="full-size random model (made when missing)")
    p.add_argument("--out", default=os.environ.get("OUT") or tempfile.gettempdir())
    p.add_argument("--steps", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    size = "full" if args.device == "cuda" else "tiny"
    root = args.root or os.path.join(tempfile.gettempdir(), f"chattts-random-{size}")
    if not os.path.exists(os.path.join(root, "asset", "gpt", "model.safetensors")):
        make_random_checkpoint(root, size, seed=0)
    figures: dict = {"device": args.device, "torch": torch.__version__}
    if args.device == "cuda":
        figures["gpu"] = torch.cuda.get_device_name(0)
    conformance(args.device, figures)
    compiled_and_flash(root, args.device, min(args.steps, 64), figures)
    chat = load(root, args.device)
    for batch in (1, 8):
        figures[f"rtf_batch{batch}"] = rtf(chat, batch, args.steps, args.repeats)
        print(f"batch {batch}: real-time factor {figures[f'rtf_batch{batch}']:.3f}", flush=True)
    figures["ttfa_under_load_s"] = ttfa_under_load(chat, args.steps, args.repeats)
    print(f"first chunk with 7 others running: {figures['ttfa_under_load_s']:.3f} s", flush=True)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "gpu_check.json"), "w", encoding="utf-8") as f:
        json.dump(figures, f, indent=1)


if __name__ == "__main__":
    main()
