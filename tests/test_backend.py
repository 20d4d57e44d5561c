"""The GPT backend seam and the engine builder: options applied once, where objects are built."""

from __future__ import annotations

import logging

import pytest
import torch

from chattts.generation.backend import TorchBackend
from chattts.generation.build import build_engine
from chattts.model.gpt import GPT, KVCache, StaticKVCache
from chattts.options import EngineOptions
from chattts.pipeline.models import Models


@pytest.fixture(scope="module")
def models(tiny_root) -> Models:
    return Models.load(tiny_root)


def _prompt(models: Models, batch: int = 3, t: int = 7, pad: int = 3):
    gen = torch.Generator().manual_seed(0)
    embeds = torch.randn(batch, t, models.gpt.hidden_size, generator=gen)
    mask = torch.ones(batch, t, dtype=torch.long)
    mask[1, :pad] = 0  # left padding, as the tokenizer pads
    steps = torch.randn(batch, 4, 1, models.gpt.hidden_size, generator=gen)
    return embeds, mask, steps


@pytest.mark.parametrize("name", ["auto", "torch"])
def test_the_backend_option_picks_the_torch_backend(models, name):
    engine = build_engine(models.gpt, models.embed, models.device, EngineOptions(backend=name))
    assert isinstance(engine.backend, TorchBackend) and engine.backend.name == "torch"
    assert engine.options.backend == name and not engine.static_decode


def test_a_session_runs_the_one_gpt_forward(models, monkeypatch):
    """Prefill and decode steps are GPT.forward over the session's cache: the session's hidden
    states are the last position of GPT.forward's, and each pass is one forward call."""
    embeds, mask, steps = _prompt(models)
    calls = []
    real = GPT.forward

    def forward(self, x, *args, **kwargs):
        calls.append(tuple(x.shape))
        return real(self, x, *args, **kwargs)

    monkeypatch.setattr(GPT, "forward", forward)
    engine = build_engine(models.gpt, models.embed, models.device)
    with torch.inference_mode():
        session = engine.backend.open(3, 7 + len(steps[0]))
        got = [session.prefill(embeds, mask)] + [session.decode(s) for s in steps.unbind(1)]
        session.close()
    assert calls == [(3, 7, 64)] + [(3, 1, 64)] * 4
    monkeypatch.undo()
    with torch.inference_mode():
        cache = models.gpt.new_cache(3, 11, models.device)
        want = [models.gpt(embeds, cache, mask)[:, -1]]
        want += [models.gpt(s, cache)[:, -1] for s in steps.unbind(1)]
    for g, w in zip(got, want, strict=True):
        assert g.shape == (3, 64) and torch.equal(g, w)


def test_a_row_that_leaves_is_replaced_by_the_last_and_the_rest_carry_on(models):
    embeds, mask, steps = _prompt(models)
    with torch.inference_mode():
        whole = models.engine.backend.open(3, 11)
        part = models.engine.backend.open(3, 11)
        whole.prefill(embeds, mask), part.prefill(embeds, mask)
        whole.decode(steps[:, 0]), part.decode(steps[:, 0])
        part.remove(1)  # the last row (2) takes row 1's place
        assert part.rows == 2
        for s in steps[:, 1:].unbind(1):
            w, p = whole.decode(s), part.decode(s[[0, 2]])
            torch.testing.assert_close(p, w[[0, 2]], rtol=1e-5, atol=1e-6)
        whole.close(), part.close()


def test_the_static_cache_gives_the_eager_hidden_states_with_padding(models):
    embeds, mask, steps = _prompt(models)
    out = {}
    with torch.inference_mode():
        for static in (False, True):
            cache = models.gpt.new_cache(3, 16, models.device, static=static)
            assert type(cache) is (StaticKVCache if static else KVCache)
            h = [models.gpt(embeds, cache, mask)[:, -1]]
            h += [models.gpt(s, cache)[:, -1] for s in steps.unbind(1)]
            out[static] = torch.stack(h)
    torch.testing.assert_close(out[True], out[False], rtol=1e-5, atol=1e-6)
    with pytest.raises(NotImplementedError):
        cache.move(0, 1)


def test_the_fixed_shape_step_reuses_its_cache_between_generations(models):
    engine = build_engine(models.gpt, models.embed, models.device, fixed_shapes=True)
    first = engine.backend.open(2, 30)
    cache = first.cache
    first.close()
    again = engine.backend.open(2, 200)  # the same 256-position bucket
    assert again.cache is cache and cache.capacity == 256


def test_bfloat16_on_the_cpu_keeps_a_float32_cache(tiny_root):
    bf = Models.load(tiny_root, engine=EngineOptions(dtype="bfloat16"))
    session = bf.engine.backend.open(1, 8)
    assert bf.engine.backend.dtype == torch.bfloat16
    assert session.cache.k.dtype == torch.float32


def test_flash_attention_on_the_cpu_warns_and_keeps_sdpa(models, caplog):
    with caplog.at_level(logging.WARNING, logger="chattts"):
        models.with_engine(EngineOptions(use_flash_attn=True))
    assert "flash attention needs CUDA" in caplog.text
    engine = models.with_engine(EngineOptions(use_flash_attn=True)).engine
    assert (
        engine.backend.open(1, 4).cache.prompt_attention
        is models.gpt.new_cache(1, 4, "cpu").prompt_attention
    )
