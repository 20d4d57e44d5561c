"""The GPT body and the DVAE quantiser as standalone modules, without transformers' LlamaModel.

transformers is still installed (the tokenizer uses it), so its ``LlamaModel`` serves as the
independent reference for our LLaMA layers, RoPE tables and config reading.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from chattts.config import read_gpt_json
from chattts.errors import WeightsError
from chattts.model.dvae import DVAE
from chattts.model.gpt import GPT


def _llama_reference(gpt_dir: str):
    from transformers import LlamaModel

    return LlamaModel.from_pretrained(gpt_dir, dtype=torch.float32).eval()


@pytest.mark.parametrize("padded", [False, True])
def test_prefill_equals_transformers_llama(tiny_root, padded):
    gpt_dir = os.path.join(tiny_root, "asset", "gpt")
    ours = GPT.from_files(gpt_dir, os.path.join(gpt_dir, "model.safetensors"))
    ref = _llama_reference(gpt_dir)
    gen = torch.Generator().manual_seed(0)
    embeds = torch.randn(2, 9, ours.hidden_size, generator=gen)
    mask = torch.ones(2, 9, dtype=torch.long)
    if padded:
        mask[1, :3] = 0  # left padding, as the tokenizer pads
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
    with torch.inference_mode():
        cache = ours.new_cache(2, 12, torch.device("cpu"))
        got = ours(embeds, cache, mask)
        want = ref(inputs_embeds=embeds, attention_mask=mask, position_ids=positions)
    real = mask.bool()
    diff = (got - want.last_hidden_state)[real].abs().max()
    assert float(diff) < 1e-5


def test_decode_steps_equal_a_full_forward(tiny_root):
    gpt_dir = os.path.join(tiny_root, "asset", "gpt")
    ours = GPT.from_files(gpt_dir, os.path.join(gpt_dir, "model.safetensors"))
    ref = _llama_reference(gpt_dir)
    embeds = torch.randn(1, 7, ours.hidden_size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        cache = ours.new_cache(1, 7, torch.device("cpu"))
        steps = [ours(embeds[:, :4], cache, torch.ones(1, 4))[:, -1]]
        for t in range(4, 7):
            steps.append(ours(embeds[:, t : t + 1], cache)[:, -1])
        want = ref(inputs_embeds=embeds).last_hidden_state[0, 3:]
    assert float((torch.cat(steps) - want).abs().max()) < 1e-5


def test_loading_the_gpt_does_not_import_transformers_models(tiny_root):
    code = (
        "import sys, chattts; c = chattts.Chat(); "
        f"assert c.load(source='custom', custom_path={tiny_root!r}, verify=False); "
        "c.infer(['hi'], skip_refine_text=True, do_text_normalization=False, "
        "params_infer_code=chattts.InferCodeParams(max_new_token=4, show_tqdm=False)); "
        "print(sorted(m for m in sys.modules if m.startswith('transformers.models.llama') "
        "or m == 'vector_quantize_pytorch'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _rewrite_config(tmp_path, tiny_root, **changes) -> str:
    gpt_dir = tmp_path / "gpt"
    shutil.copytree(os.path.join(tiny_root, "asset", "gpt"), gpt_dir)
    with open(gpt_dir / "config.json", encoding="utf-8") as f:
        raw = json.load(f)
    for key, value in changes.items():
        if value is None:
            raw.pop(key, None)
        else:
            raw[key] = value
    with open(gpt_dir / "config.json", "w", encoding="utf-8") as f:
        json.dump(raw, f)
    return str(gpt_dir)


def test_transformers4_config_format_reads_the_same(tmp_path, tiny_root):
    new = read_gpt_json(os.path.join(tiny_root, "asset", "gpt", "config.json"))
    old_dir = _rewrite_config(
        tmp_path, tiny_root, rope_parameters=None, rope_theta=10000.0, rope_scaling=None
    )
    assert read_gpt_json(os.path.join(old_dir, "config.json")) == new
    assert new.rope_theta == 10000.0 and new.head_dim == 16


def test_linear_rope_matches_transformers(tmp_path, tiny_root):
    gpt_dir = _rewrite_config(
        tmp_path,
        tiny_root,
        rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 500.0},
    )
    ours = GPT.from_files(gpt_dir, os.path.join(gpt_dir, "model.safetensors"))
    ref = _llama_reference(gpt_dir)
    embeds = torch.randn(1, 6, ours.hidden_size, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        got = ours(embeds, ours.new_cache(1, 6, torch.device("cpu")), torch.ones(1, 6))
        want = ref(inputs_embeds=embeds).last_hidden_state
    assert float((got - want).abs().max()) < 1e-5


def test_unsupported_rope_or_activation_is_named(tmp_path, tiny_root):
    gpt_dir = _rewrite_config(
        tmp_path, tiny_root, rope_parameters={"rope_type": "yarn", "rope_theta": 1e4}
    )
    with pytest.raises(WeightsError, match="rope type 'yarn'.*config.json|config.json.*yarn"):
        GPT.from_files(gpt_dir, os.path.join(gpt_dir, "model.safetensors"))
    gpt_dir = _rewrite_config(tmp_path / "b", tiny_root, hidden_act="gelu")
    with pytest.raises(WeightsError, match="hidden_act 'gelu'"):
        read_gpt_json(os.path.join(gpt_dir, "config.json"))


def test_missing_layer_tensor_is_named(tmp_path, tiny_root):
    from safetensors.torch import load_file, save_file

    gpt_dir = _rewrite_config(tmp_path, tiny_root)
    path = os.path.join(gpt_dir, "model.safetensors")
    state = load_file(path)
    key = next(k for k in state if k.endswith("layers.1.mlp.up_proj.weight"))
    del state[key]
    save_file(state, path)
    with pytest.raises(WeightsError, match=r"model\.safetensors.*layers\.1\.mlp\.up_proj"):
        GPT.from_files(gpt_dir, path)


def test_gfsq_is_built_on_first_use_with_the_loaded_weights(tiny_root):
    path = os.path.join(tiny_root, "asset", "DVAE.safetensors")
    dvae = DVAE.from_file(path)
    proj = dvae.vq_layer.quantizer.rvqs[0].project_in.weight.clone()
    codes = torch.randint(0, 5, (1, 4, 6))
    mel = dvae.decode(codes)
    assert mel.shape == (1, dvae.cfg.n_mels, 12)
    assert type(dvae.vq_layer.quantizer).__name__ == "GroupedResidualFSQ"
    assert torch.equal(dvae.vq_layer.quantizer.rvqs[0].project_in.weight, proj)
    # the encoder path goes through the same quantiser and gives codes in range
    wav = torch.randn(1, 24000 // 4, generator=torch.Generator().manual_seed(3)) * 0.1
    got = dvae.encode(wav)
    assert got.shape[1] == 4 and int(got.min()) >= 0 and int(got.max()) < 5**4
