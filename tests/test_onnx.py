"""The GPT on ONNX Runtime: the converted graph against the torch GPT, generation through it,
the conversion cache, and the errors (docs/engine.md, "ONNX Runtime").

The conformance cases run on the float32 graph in test_conformance.py, streaming on the int8
graph in test_streaming.py.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading

import pytest
import torch

import chattts
from chattts.assets.cache import sha256_file
from chattts.config import read_gpt_json
from chattts.errors import MissingDependencyError, UnsupportedOptionError
from chattts.generation import ort_convert
from chattts.generation.backend import TorchBackend
from chattts.generation.build import build_backend
from chattts.generation.ort_backend import OrtBackend
from chattts.generation.ort_convert import converted_gpt
from chattts.model.gpt import GPT
from chattts.options import EngineOptions
from chattts.pipeline.passes import last

P = chattts.InferCodeParams


@pytest.fixture(scope="module")
def gpt_dir(tiny_root) -> str:
    return os.path.join(tiny_root, "asset", "gpt")


@pytest.fixture(scope="module")
def torch_gpt(gpt_dir) -> GPT:
    return GPT.from_files(gpt_dir, os.path.join(gpt_dir, "model.safetensors"))


def ort_backend(gpt_dir: str, precision: str) -> OrtBackend:
    graph = converted_gpt(gpt_dir, precision)
    return OrtBackend.from_graph(graph.path, read_gpt_json(os.path.join(gpt_dir, "config.json")))


def hidden_errors(torch_gpt: GPT, backend: OrtBackend) -> list[float]:
    """‖h − h_torch‖ / ‖h_torch‖ of a padded batch of 3: the prompt, 3 steps, the middle row
    removed (the last takes its place), 3 more steps."""
    gen = torch.Generator().manual_seed(0)
    b, t, hidden = 3, 9, torch_gpt.hidden_size
    embeds = torch.randn(b, t, hidden, generator=gen)
    mask = torch.ones(b, t, dtype=torch.long)
    mask[1, :4] = 0  # left padding, as the engine gives prompts
    mask[2, :7] = 0
    want, got = TorchBackend(torch_gpt, torch.device("cpu")).open(b, t + 8), backend.open(b, t + 8)
    errors = []

    def compare(h_want, h_got):
        errors.append(float((h_got - h_want).norm() / h_want.norm()))

    with torch.inference_mode():
        compare(want.prefill(embeds, mask), got.prefill(embeds, mask))
        rows = b
        for step in range(6):
            if step == 3:
                want.remove(1)
                got.remove(1)
                rows = 2
            x = torch.randn(rows, 1, hidden, generator=gen)
            compare(want.decode(x), got.decode(x))
    got.close()
    return errors


def test_float32_graph_gives_the_torch_hidden_states(torch_gpt, gpt_dir):
    errors = hidden_errors(torch_gpt, ort_backend(gpt_dir, "fp32"))
    print(f"float32 graph vs torch, relative error per step: {max(errors):.2e} at most")
    assert max(errors) <= 1e-4


def test_int8_graph_stays_close(torch_gpt, gpt_dir):
    errors = hidden_errors(torch_gpt, ort_backend(gpt_dir, "int8"))
    print(f"int8 graph vs torch float32, relative error per step: {max(errors):.4f} at most")
    assert 0 < max(errors) <= 0.05


def test_kv_buffers_grow_with_the_rows_and_give_the_same_hidden_states(gpt_dir, monkeypatch):
    """A session holds FIRST_POSITIONS positions per row at first (a prompt's run writes all of
    them) and doubles them as its longest row grows: the hidden states equal those of a session
    that held its whole capacity from the start, joins and removals included."""
    from chattts.generation import ort_backend as ob

    backend = ort_backend(gpt_dir, "fp32")
    gen = torch.Generator().manual_seed(1)
    hidden, capacity = backend.hidden_size, 60
    prompts = [torch.randn(2, 5, hidden, generator=gen), torch.randn(1, 7, hidden, generator=gen)]
    steps = [torch.randn(3, 1, hidden, generator=gen) for _ in range(40)]

    def run(first: int) -> tuple[list[torch.Tensor], list[int]]:
        monkeypatch.setattr(ob, "FIRST_POSITIONS", first)
        session, out, held = backend.open(3, capacity), [], []
        with torch.inference_mode():
            out.append(session.prefill(prompts[0], torch.ones(2, 5, dtype=torch.long)))
            for i, x in enumerate(steps):
                if i == 4:  # a row joins after 4 steps
                    out.append(session.prefill(prompts[1], torch.ones(1, 7, dtype=torch.long)))
                if i == 20:
                    session.remove(0)
                out.append(session.decode(x[: session.rows]).clone())
                held.append(session.held)
        session.close()
        return out, held

    grown, held = run(first=8)
    whole, held_whole = run(first=capacity)
    assert sorted(set(held)) == [8, 16, 32, capacity]  # doubled, then capped at the capacity
    assert held[0] == 8 and set(held_whole) == {capacity}
    for a, b in zip(grown, whole, strict=True):
        assert torch.equal(a, b)


def test_int8_is_auto_on_the_cpu_and_float32_stays_on_torch(chat, ort_int8_chat):
    assert chat.models.engine.backend.name == "torch" and chat.models.gpt is not None
    m = ort_int8_chat.models
    assert m.engine.backend.name == "onnxruntime"
    assert m.gpt is None and ort_int8_chat.gpt is None  # the torch GPT is never read
    assert os.path.basename(m.engine.backend.graph_path) == "model.onnx"
    assert EngineOptions(quantize="int8").resolved_backend("cuda") == "torch"
    assert EngineOptions(quantize="int8", backend="torch").resolved_backend("cpu") == "torch"


def test_int8_generation_lengths_batch_1_and_3(ort_int8_chat, cases, spk):
    passes = ort_int8_chat.pipeline.passes
    p = P(show_tqdm=False, spk_emb=spk, manual_seed=7, max_new_token=48)
    one = last(passes.code_steps(["hello world"], p))
    assert one.item_tokens(0).shape == (int(one.lengths[0]), 4)
    texts = cases["eos.batch"]["texts"]
    plist = [
        P(show_tqdm=False, spk_emb=spk, manual_seed=seed, max_new_token=n)
        for seed, n in ((1, 120), (2, 9), (3, 120))
    ]
    state = last(passes.code_steps(texts, plist))
    lengths = state.lengths.tolist()
    eos = ort_int8_chat.models.config.gpt.num_audio_tokens - 1
    assert lengths[1] <= 9
    for i, n in enumerate(lengths):
        assert not bool((state.item_tokens(i) == eos).any())  # nothing past EOS is kept
        if n < plist[i].max_new_token:  # ended by EOS, at its own step
            assert bool((state.tokens[i, n] == eos).any())
    assert len(set(lengths)) == 3, lengths
    wavs = ort_int8_chat.models.audio.decode_items(state, True, padded=False)
    assert [w.size for w in wavs] == [(2 * n - 1) * 256 for n in lengths]


def test_interrupt_stops_the_onnxruntime_engine_within_one_step(ort_int8_chat, spk):
    from chattts.generation.engine import Interrupt

    flag = Interrupt()
    p = P(show_tqdm=False, spk_emb=spk, manual_seed=3, max_new_token=300, min_new_token=300)
    seen = []
    for state in ort_int8_chat.pipeline.passes.code_steps(["hello world"], p, flag):
        seen.append(state.step)
        if state.step == 5:
            flag.set()
    assert seen[-1] <= 6 and state.interrupted


def test_torch_runs_on_one_thread_only_inside_the_onnxruntime_steps(
    ort_int8_chat, spk, monkeypatch
):
    """Inside a step (ONNX Runtime's run, heads, sampling) torch has one thread; at every
    step boundary, where the caller decodes audio, it has its configured count again."""
    from chattts.generation.ort_backend import OrtSession

    inside, between = [], []
    real = OrtSession._forward

    def forward(self, embeds, out):
        inside.append(torch.get_num_threads())
        return real(self, embeds, out)

    monkeypatch.setattr(OrtSession, "_forward", forward)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        p = P(show_tqdm=False, spk_emb=spk, manual_seed=3, max_new_token=6)
        for _ in ort_int8_chat.pipeline.passes.code_steps(["hello world"], p):
            between.append(torch.get_num_threads())
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    assert len(inside) == 6 and set(inside) == {1}
    assert len(between) == 6 and set(between) == {2} and after == 2


def test_decoders_on_onnxruntime_match_torch(chat, tiny_root):
    from chattts.decode.ort import OrtDecoders, converted_decoders
    from chattts.model.vocos import vocos_decode

    asset = os.path.join(tiny_root, "asset")
    decoders = OrtDecoders(converted_decoders(asset), os.path.join(asset, "Vocos.safetensors"))
    m = chat.models
    gen = torch.Generator().manual_seed(1)
    for batch, steps in ((1, 5), (3, 37)):
        hiddens = torch.randn(batch, 2 * m.decoder.cfg.decoder.idim, steps, generator=gen)
        mel = m.decoder.decode(hiddens)
        want = vocos_decode(m.vocos, mel)
        got = decoders.waveform(decoders.mel(hiddens))
        assert got.shape == want.shape == (batch, (2 * steps - 1) * 256)
        err = float((got - want).norm() / want.norm())
        print(f"decoders on ONNX Runtime vs torch float32: {err:.2e}")
        assert err <= 1e-5
        # the DVAE's mels (use_decoder=False) go through the same Vocos graph
        torch.testing.assert_close(
            decoders.waveform(mel), vocos_decode(m.vocos, mel), rtol=0, atol=1e-5
        )


def count_conversions(monkeypatch) -> list[str]:
    calls: list[str] = []
    real = ort_convert.run_builder

    def counting(*args, **kwargs):
        calls.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(ort_convert, "run_builder", counting)
    return calls


def test_second_load_reuses_the_conversion_and_a_corrupt_one_is_rebuilt(
    tiny_root, tmp_path, monkeypatch, caplog
):
    monkeypatch.setenv("CHATTTS_ONNX_CACHE", str(tmp_path / "cache"))
    calls = count_conversions(monkeypatch)
    kw = dict(source="custom", custom_path=tiny_root, verify=False, device="cpu")

    def load_and_speak():
        c = chattts.Chat()
        c.load(**kw, quantize="int8", raise_on_error=True)
        p = P(show_tqdm=False, manual_seed=1, max_new_token=12, min_new_token=12)
        return c, c.infer(["hello"], skip_refine_text=True, params_infer_code=p)[0]

    from chattts.decode import ort as ort_decoder

    exports = []
    real_export = ort_decoder._export
    monkeypatch.setattr(ort_decoder, "_export", lambda *a: exports.append(a[2]) or real_export(*a))
    first, wav = load_and_speak()
    graph = first.models.engine.backend.graph_path
    assert calls == ["int8"] and exports == []  # int8 decodes in torch (the faster)
    _, again = load_and_speak()
    assert calls == ["int8"]  # the cached graph, no second export
    assert (again == wav).all()
    data = os.path.join(os.path.dirname(graph), "model.onnx.data")
    with open(data, "r+b") as f:  # same size, different bytes
        f.seek(100)
        f.write(b"\xff" * 16)
    with caplog.at_level(logging.WARNING, logger="chattts"):
        _, rebuilt = load_and_speak()
    assert calls == ["int8", "int8"]
    warnings = [r for r in caplog.records if "rebuilding" in r.getMessage()]
    assert len(warnings) == 1 and "SHA256" in warnings[0].getMessage()
    assert (rebuilt == wav).all()
    manifest = json.loads(open(os.path.join(os.path.dirname(graph), "manifest.json")).read())
    assert manifest["converter_version"] == ort_convert.CONVERTER_VERSION
    assert manifest["source_sha256"] == sha256_file(
        os.path.join(tiny_root, "asset", "gpt", "model.safetensors")
    )


def test_a_stale_entry_is_rebuilt(gpt_dir, tmp_path, monkeypatch, caplog):
    calls = count_conversions(monkeypatch)
    first = converted_gpt(gpt_dir, "fp32", str(tmp_path))
    manifest_path = os.path.join(os.path.dirname(first.path), "manifest.json")
    manifest = json.loads(open(manifest_path).read())
    manifest["source_sha256"] = "0" * 64
    with open(manifest_path, "w") as f:
        json.dump(manifest, f)
    with caplog.at_level(logging.WARNING, logger="chattts"):
        again = converted_gpt(gpt_dir, "fp32", str(tmp_path))
    assert again == first and calls == ["fp32", "fp32"]
    assert "source_sha256" in caplog.text


def test_concurrent_loads_convert_once(gpt_dir, tmp_path, monkeypatch):
    calls = count_conversions(monkeypatch)
    out, errors = [], []

    def load():
        try:
            out.append(converted_gpt(gpt_dir, "fp32", str(tmp_path)))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and calls == ["fp32"] and out[0] == out[1]


def test_missing_onnxruntime_names_the_install(ort_chat, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingDependencyError, match="pip install .*onnxruntime"):
        ort_chat.models.with_engine(EngineOptions(backend="onnxruntime"))
    monkeypatch.setitem(sys.modules, "onnxruntime_genai", None)
    with pytest.raises(MissingDependencyError, match="pip install .*onnxruntime-genai"):
        ort_convert._require_converter()


def test_backend_choices_are_checked(chat, ort_chat, gpt_dir):
    with pytest.raises(UnsupportedOptionError, match="CPU"):
        build_backend(
            None, torch.device("cuda"), EngineOptions(backend="onnxruntime"), gpt_dir=gpt_dir
        )
    with pytest.raises(ValueError, match="float32"):
        EngineOptions(backend="onnxruntime", dtype="bfloat16")
    with pytest.raises(UnsupportedOptionError, match="backend='torch'"):
        ort_chat.models.with_engine(EngineOptions(backend="torch"))
    # a torch model can move its GPT to ONNX Runtime (the files are converted)
    moved = chat.models.with_engine(EngineOptions(backend="onnxruntime"))
    assert moved.engine.backend.name == "onnxruntime"


def test_prompt_and_steps_must_fit_the_rotary_table(ort_chat):
    backend = ort_chat.models.engine.backend
    with pytest.raises(ValueError, match="max_position_embeddings"):
        backend.open(1, backend.max_positions + 1)


def test_use_torch_compile_leaves_the_onnxruntime_engine_alone(ort_int8_chat, caplog):
    before = ort_int8_chat.pipeline
    with caplog.at_level(logging.WARNING):
        assert ort_int8_chat._dia_pipeline(compiled=True) is before
    assert "ONNX Runtime" in caplog.text


@pytest.mark.parametrize("spinning", [False, True])
def test_ort_spinning_reaches_the_session(gpt_dir, spinning):
    options = EngineOptions(backend="onnxruntime", ort_spinning=spinning)
    backend = build_backend(None, torch.device("cpu"), options, gpt_dir=gpt_dir)
    config = backend.session.get_session_options()
    assert config.get_session_config_entry("session.intra_op.allow_spinning") == str(int(spinning))
