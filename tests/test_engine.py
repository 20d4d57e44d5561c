"""The decode engine: cache once per generation, fixed-shape and compiled steps, precisions."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

import chattts
from chattts.generation.build import build_engine
from chattts.model.quant import Int8Linear
from chattts.options import EngineOptions
from chattts.pipeline.passes import last

P = chattts.InferCodeParams
TEXTS = ["hello world", "chat speech is here"]


def run(chat, texts=TEXTS, **kw):
    kw.setdefault("manual_seed", 3)
    kw.setdefault("max_new_token", 24)
    state = last(chat.pipeline.passes.code_steps(texts, P(show_tqdm=False, **kw)))
    return state.tokens.clone(), state.lengths.clone(), state.hiddens.clone()


def load(tiny_root, **kw) -> chattts.Chat:
    chat = chattts.Chat()
    assert chat.load(
        source="custom", custom_path=tiny_root, verify=False, raise_on_error=True, **kw
    )
    return chat


def test_cache_is_allocated_once_per_generation(chat, monkeypatch):
    gpt = chat.models.gpt
    made = []
    real = gpt.new_cache
    monkeypatch.setattr(gpt, "new_cache", lambda *a, **k: made.append(a) or real(*a, **k))
    tokens, lengths, _ = run(chat, max_new_token=20)
    assert len(made) == 1
    batch, capacity = made[0][:2]
    assert batch == 2 and capacity >= 20


def test_finished_items_leave_the_decode_batch(chat, spk, monkeypatch):
    """Without a batch seed an item that ended costs no more decode work."""
    backend = chat.models.engine.backend
    sizes = []
    real_open = backend.open

    def open_session(batch, positions):
        session = real_open(batch, positions)
        real_decode = session.decode
        session.decode = lambda x: sizes.append(x.shape[0]) or real_decode(x)
        return session

    monkeypatch.setattr(backend, "open", open_session)
    params = [
        P(show_tqdm=False, spk_emb=spk, manual_seed=1, max_new_token=4),
        P(show_tqdm=False, spk_emb=spk, manual_seed=2, max_new_token=12),
    ]
    state = last(chat.pipeline.passes.code_steps(TEXTS, params))
    assert state.lengths.tolist() == [4, 12]
    assert sizes[:3] == [2, 2, 2] and set(sizes[3:]) == {1}


def test_static_step_gives_the_eager_tokens(chat, monkeypatch):
    """The fixed-shape step (what compile=True compiles), run uncompiled, equals eager."""
    m = chat.models
    eager = run(chat)
    engine = build_engine(m.gpt, m.embed, m.device, EngineOptions(), fixed_shapes=True)
    assert engine.static_decode
    monkeypatch.setattr(chat.pipeline.passes, "m", replace(m, engine=engine))
    static = run(chat)
    again = run(chat)  # the pooled cache is reused: stale entries must not leak in
    assert torch.equal(eager[0], static[0]) and torch.equal(eager[1], static[1])
    torch.testing.assert_close(eager[2], static[2], rtol=1e-4, atol=1e-5)
    assert torch.equal(static[0], again[0])


def test_compiled_step_on_cpu_gives_the_same_tokens(tiny_root, chat):
    compiled = load(tiny_root, compile=True)
    assert compiled.models.engine.static_decode
    eager = run(chat, max_new_token=12)
    got = run(compiled, max_new_token=12)
    assert torch.equal(eager[0], got[0]) and torch.equal(eager[1], got[1])
    torch.testing.assert_close(eager[2], got[2], rtol=1e-4, atol=1e-5)


def test_int8_on_torch_quantises_gpt_heads_and_decoders(tiny_root, chat):
    q = load(tiny_root, quantize="int8", backend="torch")
    m = q.models
    assert not any(type(mod) is torch.nn.Linear for mod in m.gpt.body.layers.modules())
    assert isinstance(m.embed.head_text, Int8Linear) and isinstance(m.embed.code_head, Int8Linear)
    assert not any(type(mod) is torch.nn.Linear for mod in m.decoder.modules())
    h = torch.randn(3, m.gpt.hidden_size)
    ref = chat.models.embed.code_logits(h)
    got = m.embed.code_logits(h)
    assert got.shape == ref.shape == (3 * 4, m.config.gpt.num_audio_tokens)
    assert float((got - ref).norm() / ref.norm()) < 0.05
    tokens, lengths, hiddens = run(q)
    assert tokens.shape[0] == 2 and int(lengths.min()) > 0 and torch.isfinite(hiddens).all()
    wavs = q.infer(["hello world"], skip_refine_text=True, params_infer_code=P(manual_seed=1))
    assert wavs[0].size > 0 and bool(torch.isfinite(torch.from_numpy(wavs[0])).all())


def test_int8_needs_the_cpu_and_float32(tiny_root):
    with pytest.raises(ValueError, match="float32"):
        load(tiny_root, quantize="int8", dtype="bfloat16")
    with pytest.raises(ValueError, match="quantize"):
        load(tiny_root, quantize="int4")


def test_bfloat16_generates_close_hidden_states(tiny_root, chat):
    bf = load(tiny_root, dtype="bfloat16")
    assert bf.models.gpt.dtype == torch.bfloat16
    embeds, mask = chat.pipeline.passes.code_inputs(["hello world"], P())
    with torch.inference_mode():
        ref = chat.models.gpt(embeds, chat.models.gpt.new_cache(1, 40, "cpu"), mask)
        got = bf.models.gpt(embeds.bfloat16(), bf.models.gpt.new_cache(1, 40, "cpu"), mask)
    assert float((got.float() - ref).norm() / ref.norm()) < 0.05
    tokens, lengths, _ = run(bf)
    assert int(lengths.min()) > 0 and int(tokens.max()) < 626


def test_stacked_code_heads_equal_the_separate_heads(chat):
    embed = chat.models.embed
    h = torch.randn(5, embed.hidden_size)
    separate = torch.stack([head(h) for head in embed.head_code], 1).reshape(-1, 626)
    torch.testing.assert_close(embed.code_logits(h), separate, rtol=1e-5, atol=1e-6)


def test_interrupt_stops_within_one_step(chat):
    from chattts.generation.engine import Interrupt

    flag = Interrupt()
    steps = chat.pipeline.passes.code_steps(TEXTS, P(show_tqdm=False, max_new_token=50), flag)
    seen = 0
    for state in steps:
        seen += 1
        if state.step == 3:
            flag.set()
    assert seen == 3 and state.interrupted
    assert int(state.step) == 3


def test_engine_options_are_checked_once_and_int8_only_at_load(chat):
    with pytest.raises(ValueError):
        EngineOptions(quantize="int4")
    # int8 weights and the dtype are applied while loading: a new engine cannot add them
    with pytest.raises(ValueError, match="loaded"):
        chat.models.with_engine(EngineOptions(quantize="int8", backend="torch"))
    with pytest.raises(ValueError, match="loaded"):
        chat.models.with_engine(EngineOptions(dtype="bfloat16"))


def test_with_engine_shares_the_modules_and_builds_a_new_engine(chat):
    m = chat.models
    fixed = m.with_engine(EngineOptions(use_flash_attn=True))  # a warning on the CPU, no effect
    assert fixed.gpt is m.gpt and fixed.embed is m.embed and fixed.decoder is m.decoder
    assert fixed.engine is not m.engine and fixed.engine.options.use_flash_attn
    assert m.engine.options == EngineOptions()
