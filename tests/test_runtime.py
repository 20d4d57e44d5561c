"""chattts.runtime, the one owner of process-wide torch settings: torch's thread count around
the GPT's steps on ONNX Runtime (restored for the caller, however generations overlap), the
size of ONNX Runtime's pool, the int8 kernel library, and nothing changed at import time."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
import torch
from conftest import tiny_chat

import chattts
from chattts import runtime
from chattts.generation.build import build_backend
from chattts.options import EngineOptions

P = chattts.InferCodeParams


@pytest.fixture()
def two_threads():
    """torch configured with two threads for the test (the count before is restored)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield 2
    torch.set_num_threads(before)


def count_in_new_thread() -> int:
    seen: list[int] = []
    worker = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    worker.start()
    worker.join()
    return seen[0]


def test_overlapping_scopes_give_every_user_the_configured_count_back(two_threads):
    first, second = runtime.gpt_threads(1), runtime.gpt_threads(1)
    first.__enter__()
    assert torch.get_num_threads() == 1 and runtime.configured_threads() == 2
    second.__enter__()
    first.__exit__(None, None, None)  # left before the other: its caller has 2 threads again
    assert torch.get_num_threads() == 2 and runtime.active_gpt_scopes() == 1
    assert runtime.configured_threads() == 2
    second.__exit__(None, None, None)
    assert torch.get_num_threads() == 2 and runtime.active_gpt_scopes() == 0
    with pytest.raises(RuntimeError), runtime.gpt_threads(1):
        raise RuntimeError("a failing step")
    assert torch.get_num_threads() == 2 and runtime.active_gpt_scopes() == 0
    assert count_in_new_thread() == 2
    with pytest.raises(ValueError):
        runtime.gpt_threads(0)


def _steps(chat, seed: int, n: int, spk: str):
    params = P(show_tqdm=False, spk_emb=spk, manual_seed=seed, max_new_token=n)
    return chat.pipeline.passes.code_steps(["hello world"], params)


def test_overlapping_generations_in_two_chats_leave_the_thread_counts_as_they_were(
    ort_int8_chat, chat, spk, two_threads
):
    """Two ONNX Runtime int8 Chats (two sessions: the old per-backend count saved the other's
    1 and restored it for good) and a torch Chat, interleaved in one thread, then two at once
    in two threads."""
    other = tiny_chat(quantize="int8")
    generations = [_steps(ort_int8_chat, 1, 8, spk), _steps(other, 2, 12, spk)]
    generations.append(_steps(chat, 3, 10, spk))
    seen = []
    while generations:
        for gen in list(generations):
            if next(gen, None) is None:
                generations.remove(gen)
            else:
                seen.append(torch.get_num_threads())
    assert len(seen) == 8 + 12 + 10 and set(seen) == {2}
    assert torch.get_num_threads() == 2

    between: list[int] = []

    def generate(c, seed):
        for _ in _steps(c, seed, 16, spk):
            between.append(torch.get_num_threads())

    workers = [
        threading.Thread(target=generate, args=(c, s)) for c, s in ((ort_int8_chat, 4), (other, 5))
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(between) == 32 and set(between) == {2}
    assert torch.get_num_threads() == 2 and count_in_new_thread() == 2
    assert runtime.active_gpt_scopes() == 0


def test_streamed_decoding_on_the_int8_path_runs_with_the_configured_threads(
    ort_int8_chat, spk, two_threads, monkeypatch
):
    from chattts.generation.ort_backend import OrtSession
    from chattts.model.dvae import Decoder

    decoding, stepping = [], []
    decode, forward = Decoder.decode, OrtSession._forward
    monkeypatch.setattr(
        Decoder,
        "decode",
        lambda self, x: decoding.append(torch.get_num_threads()) or decode(self, x),
    )
    monkeypatch.setattr(
        OrtSession,
        "_forward",
        lambda self, x, out: stepping.append(torch.get_num_threads()) or forward(self, x, out),
    )
    params = P(
        show_tqdm=False,
        spk_emb=spk,
        manual_seed=1,
        max_new_token=40,
        min_new_token=40,
        stream_first_batch=4,
        stream_batch=8,
    )
    chunks = list(
        ort_int8_chat.infer(
            ["hello world"], stream=True, skip_refine_text=True, params_infer_code=params
        )
    )
    assert len(chunks) >= 4 and len(decoding) >= 4
    assert set(decoding) == {2}  # the audio between steps: the configured threads
    assert len(stepping) == 40 and set(stepping) == {1}  # the steps: one torch thread


def test_onnxruntime_pool_is_sized_from_the_configured_count(tiny_root, two_threads):
    """A backend built while another generation's step holds torch at one thread still gets
    the configured count for ONNX Runtime's pool."""
    gpt_dir = os.path.join(tiny_root, "asset", "gpt")
    with runtime.gpt_threads(1):
        backend = build_backend(
            None, torch.device("cpu"), EngineOptions(backend="onnxruntime"), gpt_dir=gpt_dir
        )
    assert backend.session.get_session_options().intra_op_num_threads == 2


def test_int8_kernels_are_selected_by_the_runtime():
    name = runtime.use_int8_kernels()
    assert name in runtime.QUANTIZED_ENGINES and torch.backends.quantized.engine == name
    assert runtime.use_int8_kernels() == name


def test_importing_the_model_and_generation_modules_changes_no_process_setting():
    code = (
        "import os, pkgutil, importlib, torch\n"
        "before = (dict(os.environ), torch.get_num_threads(), torch.backends.quantized.engine,"
        " torch.get_num_interop_threads())\n"
        "import chattts.model, chattts.generation\n"
        "for pkg in (chattts.model, chattts.generation):\n"
        "    for m in pkgutil.iter_modules(pkg.__path__):\n"
        "        importlib.import_module(pkg.__name__ + '.' + m.name)\n"
        "import chattts.runtime\n"
        "after = (dict(os.environ), torch.get_num_threads(), torch.backends.quantized.engine,"
        " torch.get_num_interop_threads())\n"
        "assert before == after, (before[1:], after[1:])\n"
        "print('unchanged')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "unchanged"
