"""What loading keeps in memory: the DVAE on first use, int8 modules quantised as they load."""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import load_file, save_file

import chattts
from chattts.errors import WeightsError
from chattts.model.loading import release_free_memory
from chattts.model.quant import Int8Linear
from chattts.options import EngineOptions
from chattts.pipeline.models import Models


def test_dvae_loads_on_first_use_with_the_same_codes(tiny_root, chat, cases, expected):
    models = Models.load(tiny_root)
    assert not models.dvae_loader.loaded
    # generating speech through the Decoder never needs the DVAE
    chattts_chat = chattts.Chat()
    assert chattts_chat.load(source="custom", custom_path=tiny_root, verify=False)
    chattts_chat.infer(
        ["hello"],
        skip_refine_text=True,
        do_text_normalization=False,
        params_infer_code=chattts.InferCodeParams(max_new_token=6, show_tqdm=False),
    )
    assert not chattts_chat.models.dvae_loader.loaded
    codes = models.dvae.encode(expected["encode.input_wav"][None])[0]
    assert models.dvae_loader.loaded
    want = chat.models.dvae.encode(expected["encode.input_wav"][None])[0]
    assert torch.equal(codes, want)


def test_a_broken_dvae_file_still_fails_at_load(tiny_copy):
    path = os.path.join(tiny_copy, "asset", "DVAE.safetensors")
    state = load_file(path)
    key = next(k for k in state if k.startswith("decoder.decoder_block.0.pwconv1"))
    state[key] = state[key][:-1].clone()
    save_file(state, path)
    with pytest.raises(WeightsError, match=r"DVAE\.safetensors.*decoder_block\.0\.pwconv1"):
        Models.load(tiny_copy)
    del state[key]
    save_file(state, path)
    with pytest.raises(WeightsError, match=r"DVAE\.safetensors.*missing"):
        Models.load(tiny_copy)


def test_coef_replacement_reaches_the_lazy_dvae(tiny_root, chat):
    from chattts.pipeline.models import encode_coef

    coef = encode_coef(torch.full((1, chat.config.dvae.n_mels, 1), 0.25))
    models = Models.load(tiny_root, coef=coef)
    assert torch.all(models.dvae.coef == 0.25)


def test_int8_modules_are_quantised_during_load(tiny_root):
    models = Models.load(tiny_root, engine=EngineOptions(quantize="int8", backend="torch"))
    linears = [type(m) for m in models.gpt.body.layers.modules() if isinstance(m, torch.nn.Linear)]
    assert linears == []
    assert isinstance(models.embed.head_text, Int8Linear)
    assert isinstance(models.embed.code_head, Int8Linear)
    assert not any(type(m) is torch.nn.Linear for m in models.decoder.modules())
    assert not any(type(m) is torch.nn.Linear for m in models.vocos.backbone.modules())
    with pytest.raises(ValueError, match="CPU only"):
        Models.load(tiny_root, device="meta", engine=EngineOptions(quantize="int8"))
    # on ONNX Runtime the torch GPT is not read, the text head is int8, the code heads stay
    # float32 (less error) and the Decoder and Vocos are torch's int8 (the faster here)
    ort = Models.load(tiny_root, engine=EngineOptions(quantize="int8"))
    assert ort.gpt is None and ort.audio.ort is None and ort.has_decoder
    assert isinstance(ort.embed.head_text, Int8Linear)
    assert type(ort.embed.code_head) is torch.nn.Linear
    assert not any(type(m) is torch.nn.Linear for m in ort.decoder.modules())
    # float32 on ONNX Runtime: the Decoder and Vocos run as exported graphs
    f32 = Models.load(tiny_root, engine=EngineOptions(backend="onnxruntime"))
    assert f32.decoder is None and f32.vocos is None and f32.audio.ort is not None


def test_release_free_memory_keeps_tensors_intact():
    keep = torch.arange(1000, dtype=torch.float32)
    freed = [torch.ones(1 << 18) for _ in range(8)]
    del freed
    release_free_memory()
    assert float(keep.sum()) == 999 * 1000 / 2
