"""The random-checkpoint factory: tiny and full size, official layout, loads with verify=False."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import chattts
from chattts.assets import REQUIRED_FILES
from chattts.testing import make_random_checkpoint


def test_tiny_factory_matches_the_fixture_dimensions(tmp_path, tiny_root):
    root = make_random_checkpoint(str(tmp_path / "tiny"), "tiny", seed=1)
    for rel in REQUIRED_FILES:
        assert os.path.isfile(os.path.join(root, rel)), rel
    made = chattts.config.ModelConfig.from_model_root(root)
    fixture = chattts.config.ModelConfig.from_model_root(tiny_root)
    assert made == fixture
    again = make_random_checkpoint(str(tmp_path / "again"), "tiny", seed=1)
    for rel in ("asset/Embed.safetensors", "asset/gpt/model.safetensors"):
        with open(os.path.join(root, rel), "rb") as a, open(os.path.join(again, rel), "rb") as b:
            assert a.read() == b.read(), f"{rel} differs for the same seed"


def test_full_size_factory_loads_and_infers(tmp_path):
    root = make_random_checkpoint(str(tmp_path / "full"), "full", seed=0)
    with open(os.path.join(root, "asset", "gpt", "config.json"), encoding="utf-8") as f:
        conf = json.load(f)
    assert conf["hidden_size"] == 768 and conf["num_hidden_layers"] == 20
    chat = chattts.Chat()
    assert chat.load(source="custom", custom_path=root, verify=False, raise_on_error=True)
    g = chat.config.gpt
    assert (g.hidden_size, g.num_text_tokens, g.num_audio_tokens, g.num_vq) == (768, 21178, 626, 4)
    assert chat.config.dvae.dim == 512 and chat.config.decoder.dim == 384
    assert chat.config.vocos.num_layers == 8
    steps = 6
    params = chattts.InferCodeParams(
        spk_emb=chat.sample_random_speaker(1),
        manual_seed=2,
        min_new_token=steps,
        max_new_token=steps,
        show_tqdm=False,
    )
    from chattts.pipeline.passes import last

    state = last(chat.pipeline.passes.code_steps(["hello world", "你好"], params))
    assert state.lengths.tolist() == [steps, steps]
    wavs = chat.models.audio.decode_items(state, use_decoder=True)
    assert [w.shape for w in wavs] == [((2 * steps - 1) * 256,)] * 2
    assert all(np.isfinite(w).all() and np.abs(w).max() > 0 for w in wavs)
    out = chat.infer(["hello world", "你好"], skip_refine_text=True, params_infer_code=params)
    assert len(out) == 2 and all(0 < w.size <= (2 * steps - 1) * 256 for w in out)
    assert chat.sample_audio_speaker(np.concatenate(out))  # the DVAE loads and encodes


def _float_dtypes(root: str) -> set:
    from safetensors import safe_open

    found = set()
    for rel in REQUIRED_FILES:
        if rel.endswith(".safetensors"):
            with safe_open(os.path.join(root, rel), framework="pt") as f:
                found |= {f.get_slice(k).get_dtype() for k in f.keys()}
    return found


def test_made_tiny_checkpoint_holds_float32_and_speaks_with_a_sample(tmp_path):
    """The official files hold float32; a made checkpoint loads, speaks, and encodes a speaker
    sample (the DVAE's float64 mel window used to be written as float64 and refused)."""
    root = make_random_checkpoint(str(tmp_path / "tiny"), "tiny", seed=3)
    assert _float_dtypes(root) == {"F32"}
    chat = chattts.Chat()
    assert chat.load(source="custom", custom_path=root, verify=False, raise_on_error=True)
    params = chattts.InferCodeParams(manual_seed=1, max_new_token=12, show_tqdm=False)
    (wav,) = chat.infer(["hello world"], skip_refine_text=True, params_infer_code=params)
    assert wav.size > 0
    sample = chat.sample_audio_speaker(np.tile(wav, 4))
    params = chattts.InferCodeParams(
        spk_smp=sample, txt_smp="hello world", manual_seed=1, max_new_token=12, show_tqdm=False
    )
    (again,) = chat.infer(["hello"], skip_refine_text=True, params_infer_code=params)
    assert again.size > 0


def test_unknown_size_is_refused(tmp_path):
    with pytest.raises(ValueError):
        make_random_checkpoint(str(tmp_path / "x"), "huge")
