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


def _unfused_state(gpt: GPT) -> dict[str, torch.Tensor]:
    """The GPT's weights under the checkpoint's names (q/k/v and gate/up split again)."""
    d, nq, nkv = gpt.head_dim, gpt.num_heads, gpt.num_kv_heads
    state = {"norm.weight": gpt.body.norm.weight}
    for i, layer in enumerate(gpt.body.layers):
        p = f"layers.{i}."
        q, k, v = layer.self_attn.qkv_proj.weight.split([nq * d, nkv * d, nkv * d])
        gate, up = layer.mlp.gate_up_proj.weight.chunk(2)
        state.update(
            {
                p + "self_attn.q_proj.weight": q,
                p + "self_attn.k_proj.weight": k,
                p + "self_attn.v_proj.weight": v,
                p + "self_attn.o_proj.weight": layer.self_attn.o_proj.weight,
                p + "mlp.gate_proj.weight": gate,
                p + "mlp.up_proj.weight": up,
                p + "mlp.down_proj.weight": layer.mlp.down_proj.weight,
                p + "input_layernorm.weight": layer.input_layernorm.weight,
                p + "post_attention_layernorm.weight": layer.post_attention_layernorm.weight,
            }
        )
    return state


def test_a_gpt_built_by_its_constructor_runs_its_layers(tiny_root):
    """GPT(config) is complete: fused layers in place, the same function as LlamaModel with
    its weights (not a zero-layer body that only normalises its input)."""
    from transformers import LlamaConfig, LlamaModel

    from chattts.model.llama import rms_norm

    gpt_dir = os.path.join(tiny_root, "asset", "gpt")
    config = read_gpt_json(os.path.join(gpt_dir, "config.json"))
    torch.manual_seed(0)
    ours = GPT(config)
    assert len(ours._layers) == config.num_hidden_layers
    assert all(hasattr(layer.self_attn, "qkv_proj") for layer in ours.body.layers)
    raw = json.loads(open(os.path.join(gpt_dir, "config.json"), encoding="utf-8").read())
    ref = LlamaModel(LlamaConfig(**raw)).eval()
    missing, unexpected = ref.load_state_dict(_unfused_state(ours), strict=False)
    assert missing == ["embed_tokens.weight"] and unexpected == []
    embeds = torch.randn(2, 6, ours.hidden_size, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        got = ours(embeds, ours.new_cache(2, 6, torch.device("cpu")), torch.ones(2, 6))
        want = ref(inputs_embeds=embeds).last_hidden_state
    normed = rms_norm(embeds, ours.body.norm.weight, config.rms_norm_eps)
    assert float((got - normed).abs().max()) > 0.1
    assert float((got - want).abs().max()) < 1e-5


def test_the_layer_hook_runs_on_each_constructed_layer(tiny_root):
    from chattts.model.quant import int8_layer_hook, is_int8

    config = read_gpt_json(os.path.join(tiny_root, "asset", "gpt", "config.json"))
    seen = []
    gpt = GPT(config, layer_hook=lambda layer: seen.append(layer) or int8_layer_hook(layer))
    assert seen == list(gpt.body.layers) and is_int8(gpt)
    embeds = torch.randn(1, 5, gpt.hidden_size)
    with torch.inference_mode():
        out = gpt(embeds, gpt.new_cache(1, 5, torch.device("cpu")), torch.ones(1, 5))
    assert bool(torch.isfinite(out).all())


def test_embed_is_built_complete_with_its_heads_folded_and_int8_as_options(tiny_root):
    from safetensors.torch import load_file

    from chattts.model.embed import Embed
    from chattts.model.quant import Int8Linear

    path = os.path.join(tiny_root, "asset", "Embed.safetensors")
    config = read_gpt_json(os.path.join(tiny_root, "asset", "gpt", "config.json"))
    dims = (config.hidden_size, config.num_text_tokens, config.num_audio_tokens, config.num_vq)
    fp = Embed.from_file(path, *dims)
    raw = load_file(path)

    def folded(prefix: str) -> torch.Tensor:  # g · v / ‖v‖, row-wise
        g = raw[f"{prefix}.parametrizations.weight.original0"]
        v = raw[f"{prefix}.parametrizations.weight.original1"]
        return g * v / v.norm(dim=1, keepdim=True)

    h = torch.randn(3, config.hidden_size, generator=torch.Generator().manual_seed(5))
    code = torch.cat([folded(f"head_code.{i}") for i in range(config.num_vq)])
    torch.testing.assert_close(fp.code_logits(h), (h @ code.T).reshape(-1, 626))
    torch.testing.assert_close(fp.text_logits(h), h @ folded("head_text").T)
    assert type(fp.head_text) is type(fp.code_head) is torch.nn.Linear
    q = Embed.from_file(path, *dims, int8_text_head=True, int8_code_heads=True)
    assert isinstance(q.head_text, Int8Linear) and isinstance(q.code_head, Int8Linear)
    for got, want in ((q.code_logits(h), fp.code_logits(h)), (q.text_logits(h), fp.text_logits(h))):
        assert float((got - want).norm() / want.norm()) < 0.05
    text_only = Embed.from_file(path, *dims, int8_text_head=True)
    assert type(text_only.code_head) is torch.nn.Linear
    fresh = Embed(*dims)  # randomly initialised, and as complete
    assert fresh.code_logits(h).shape == (3 * config.num_vq, config.num_audio_tokens)
    with pytest.raises(WeightsError, match="Embed.safetensors"):
        Embed.from_file(path, config.hidden_size, 99, config.num_audio_tokens, config.num_vq)
