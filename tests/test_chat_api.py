"""The Chat facade: every public method, and bad input giving clear errors."""

from __future__ import annotations

import copy
import json
import os
import threading
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import chattts
from chattts import errors
from chattts.pipeline import trim_silence

P = chattts.InferCodeParams
R = chattts.RefineTextParams


def quick(**kw) -> P:
    kw.setdefault("max_new_token", 12)
    return P(show_tqdm=False, **kw)


def test_attributes_and_defaults():
    chat = chattts.Chat()
    for name in ("logger", "config", "normalizer", "sha256_map", "context"):
        assert hasattr(chat, name)
    assert chat.sha256_map["asset/gpt/config.json"].startswith("0aaa1ecd")
    assert chat.config.gpt.hidden_size == 768 and chat.config.gpt.num_hidden_layers == 20
    assert not chat.has_loaded()
    r, c = R(), P()
    assert (r.prompt, r.top_P, r.top_K, r.temperature, r.repetition_penalty) == (
        "",
        0.7,
        20,
        0.7,
        1.0,
    )
    assert (r.max_new_token, r.min_new_token, r.show_tqdm, r.ensure_non_empty) == (
        384,
        0,
        True,
        True,
    )
    assert (c.prompt, c.temperature, c.repetition_penalty, c.max_new_token) == (
        "[speed_5]",
        0.3,
        1.05,
        2048,
    )
    assert (c.stream_batch, c.stream_speed, c.pass_first_n_batches) == (24, 12000, 2)
    assert c.spk_emb is None and c.spk_smp is None and c.txt_smp is None and c.manual_seed is None
    assert chattts.Chat.RefineTextParams is R and chattts.Chat.InferCodeParams is P


def test_config_read_from_checkpoint(chat, tiny_root):
    with open(os.path.join(tiny_root, "config.json"), encoding="utf-8") as f:
        ref = json.load(f)
    cfg = chat.config
    for key in (
        "hidden_size",
        "intermediate_size",
        "num_attention_heads",
        "num_hidden_layers",
        "num_key_value_heads",
        "num_audio_tokens",
        "num_text_tokens",
        "num_vq",
        "max_position_embeddings",
    ):
        assert getattr(cfg.gpt, key) == ref["gpt"][key], key
    for part in ("encoder", "decoder"):
        got = getattr(cfg.dvae, part)
        assert [got.idim, got.odim, got.hidden, got.n_layer, got.bn_dim] == [
            ref["dvae"][part][k] for k in ("idim", "odim", "hidden", "n_layer", "bn_dim")
        ]
    assert cfg.dvae.vq.dim == ref["dvae"]["vq"]["dim"] and cfg.dvae.vq.groups == 2
    d = cfg.decoder.decoder
    assert [d.idim, d.odim, d.hidden, d.n_layer, d.bn_dim] == list(ref["decoder"].values())
    v = cfg.vocos
    assert (v.dim, v.intermediate_dim, v.num_layers, v.n_fft) == (32, 64, 1, 1024)


def test_infer_before_load_is_clear():
    chat = chattts.Chat()
    with pytest.raises(errors.NotLoadedError, match="load"):
        chat.infer(["hello"])
    with pytest.raises(errors.NotLoadedError):
        chat.sample_random_speaker()


def test_no_texts_give_no_waveforms(chat):
    """An empty list is zero texts, not a text with nothing to speak (tests/test_empty_input.py)."""
    assert chat.infer([]) == []
    assert list(chat.infer([], stream=True)) == []


def test_list_and_str_results(chat, spk):
    params = quick(spk_emb=spk, manual_seed=3)
    wavs = chat.infer(
        ["hello world", "chat speech"],
        skip_refine_text=True,
        split_text=False,
        params_infer_code=params,
    )
    assert isinstance(wavs, list) and len(wavs) == 2
    assert all(w.dtype == np.float32 and w.ndim == 1 and w.size > 0 for w in wavs)
    one = chat.infer("hello world", skip_refine_text=True, params_infer_code=params)
    assert isinstance(one, list) and len(one) == 1
    np.testing.assert_allclose(one[0], wavs[0], atol=1e-6)
    text = chat.infer(
        "hello world. chat speech.",
        refine_text_only=True,
        params_refine_text=R(show_tqdm=False, max_new_token=6, manual_seed=1),
    )
    assert isinstance(text, str) and text.count("\n") == 1
    texts = chat.infer(
        ["hello world"],
        refine_text_only=True,
        params_refine_text=R(show_tqdm=False, max_new_token=6, manual_seed=1),
    )
    assert isinstance(texts, list) and len(texts) == 1


def test_inputs_not_modified(chat, spk):
    texts = ["hello world. ", "chat speech model test."]
    params = quick(spk_emb=spk, manual_seed=2)
    refine = R(show_tqdm=False, max_new_token=6, manual_seed=2)
    before = (list(texts), copy.deepcopy(vars(params)), copy.deepcopy(vars(refine)))
    chat.infer(texts, params_infer_code=params, params_refine_text=refine)
    chat.infer(" ".join(texts), skip_refine_text=True, params_infer_code=params)
    assert (texts, vars(params), vars(refine)) == before
    assert P().spk_smp is None and P().txt_smp is None


def test_speakers(chat):
    a, b = chat.sample_random_speaker(7), chat.sample_random_speaker(7)
    assert a == b and a != chat.sample_random_speaker(8)
    assert isinstance(chat.sample_random_speaker(), str)
    emb = chattts.chat.decode_speaker(a)
    assert emb.dtype == torch.float16 and emb.numel() == chat.config.gpt.hidden_size
    # a tensor works wherever a speaker string does
    params_str = quick(spk_emb=a, manual_seed=1)
    params_tensor = quick(spk_emb=emb, manual_seed=1)
    w1 = chat.infer(["hello"], skip_refine_text=True, params_infer_code=params_str)[0]
    w2 = chat.infer(["hello"], skip_refine_text=True, params_infer_code=params_tensor)[0]
    np.testing.assert_array_equal(w1, w2)


@pytest.mark.parametrize("bad", ["not a speaker", "蛛寻兑", "", 42])
def test_invalid_speaker_string(chat, bad):
    with pytest.raises(ValueError):
        chat.infer(["hello"], skip_refine_text=True, params_infer_code=quick(spk_emb=bad))


def test_speaker_of_wrong_size(chat):
    wrong = chattts.voices.speaker.encode_speaker(torch.zeros(10))
    with pytest.raises(errors.SpeakerError, match="hidden size"):
        chat.infer(["hello"], skip_refine_text=True, params_infer_code=quick(spk_emb=wrong))


def test_invalid_speaker_sample(chat):
    with pytest.raises(ValueError):
        chat.infer(["hello"], skip_refine_text=True, params_infer_code=quick(spk_smp="garbage"))


def test_sample_audio_speaker_bad_shapes(chat):
    with pytest.raises(ValueError):
        chat.sample_audio_speaker(np.zeros((2, 3, 4), dtype=np.float32))
    with pytest.raises(ValueError):
        chat.sample_audio_speaker(np.zeros(0, dtype=np.float32))


def test_interrupt_from_another_thread(chat, spk):
    params = P(spk_emb=spk, manual_seed=1, min_new_token=2000, max_new_token=2000, show_tqdm=False)
    timer = threading.Timer(1.0, chat.interrupt)
    timer.start()
    t0 = time.monotonic()
    wavs = chat.infer(["hello world"], skip_refine_text=True, params_infer_code=params)
    elapsed = time.monotonic() - t0
    timer.join()
    full = (2 * 2000 - 1) * 256
    assert 0 < wavs[0].size < full, "the generation should stop early with partial audio"
    assert elapsed < 60
    # a later call is not affected by the earlier interrupt
    again = chat.infer(["hello"], skip_refine_text=True, params_infer_code=quick(spk_emb=spk))
    assert again[0].size == (2 * 12 - 1) * 256 or again[0].size > 0


def test_interrupt_stops_a_stream(chat, spk):
    params = P(spk_emb=spk, manual_seed=1, min_new_token=500, max_new_token=500, show_tqdm=False)
    stream = chat.infer(
        ["hello world"], skip_refine_text=True, stream=True, params_infer_code=params
    )
    first = next(stream)
    chat.interrupt()
    rest = list(stream)
    total = first.shape[1] + sum(c.shape[1] for c in rest)
    assert total < (2 * 500 - 1) * 256


def test_stream_matches_non_stream(chat, spk):
    params = quick(spk_emb=spk, manual_seed=5, max_new_token=40)
    whole = chat.infer(["hello world"], skip_refine_text=True, params_infer_code=params)[0]
    chunks = list(
        chat.infer(["hello world"], skip_refine_text=True, stream=True, params_infer_code=params)
    )
    assert all(c.ndim == 2 and c.shape[0] == 1 and c.dtype == np.float32 for c in chunks)
    assert len(chunks) > 1
    joined = trim_silence(np.concatenate([c[0] for c in chunks]))
    assert joined.shape == whole.shape
    assert np.linalg.norm(joined - whole) / np.linalg.norm(whole) < 1e-3


def test_unload_then_load_again(tiny_root, spk):
    chat = chattts.Chat()
    assert chat.load(source="custom", custom_path=tiny_root, verify=False)
    assert chat.has_loaded() and chat.has_loaded(use_decoder=True)
    first = chat.infer(
        ["hello"], skip_refine_text=True, params_infer_code=quick(spk_emb=spk, manual_seed=1)
    )
    chat.unload()
    assert not chat.has_loaded()
    with pytest.raises(errors.NotLoadedError):
        chat.infer(["hello"])
    assert chat.load(source="custom", custom_path=tiny_root, verify=False)
    again = chat.infer(
        ["hello"], skip_refine_text=True, params_infer_code=quick(spk_emb=spk, manual_seed=1)
    )
    np.testing.assert_allclose(first[0], again[0], rtol=0, atol=1e-5 * np.abs(first[0]).max())


def test_load_missing_file_names_it(tiny_copy, caplog):
    os.remove(os.path.join(tiny_copy, "asset", "Decoder.safetensors"))
    chat = chattts.Chat()
    with pytest.warns(errors.LoadFailedWarning, match="Decoder.safetensors"):
        assert chat.load(source="custom", custom_path=tiny_copy, verify=False) is False
    assert "Decoder.safetensors" in caplog.text
    with pytest.raises(FileNotFoundError, match="Decoder.safetensors"):
        chat.load(source="custom", custom_path=tiny_copy, verify=False, raise_on_error=True)


def test_load_corrupt_safetensors(tiny_copy):
    path = os.path.join(tiny_copy, "asset", "Embed.safetensors")
    with open(path, "r+b") as f:
        f.write(b"\xff" * 64)
    with pytest.raises(errors.WeightsError, match="Embed.safetensors"):
        chattts.Chat().load(
            source="custom", custom_path=tiny_copy, verify=False, raise_on_error=True
        )


def test_load_wrong_hash_names_file_and_hashes(tiny_copy):
    # the tiny tokenizer (saved by transformers 5) has no special_tokens_map.json: give it one
    with open(os.path.join(tiny_copy, "asset", "tokenizer", "special_tokens_map.json"), "w") as f:
        f.write("{}")
    with pytest.raises(errors.ChecksumMismatchError) as info:
        chattts.Chat().load(source="custom", custom_path=tiny_copy, raise_on_error=True)
    msg = str(info.value)
    assert info.value.path.endswith(".safetensors") or info.value.path.endswith(".json")
    assert info.value.expected in msg and info.value.found in msg


def test_shape_mismatch_names_file_tensor_and_shapes(tiny_copy):
    path = os.path.join(tiny_copy, "asset", "Decoder.safetensors")
    state = load_file(path)
    state["out_conv.weight"] = torch.zeros(100, 32, 5)
    save_file(state, path)
    with pytest.raises(errors.WeightsError) as info:
        chattts.Chat().load(
            source="custom", custom_path=tiny_copy, verify=False, raise_on_error=True
        )
    msg = str(info.value)
    assert "Decoder.safetensors" in msg and "out_conv.weight" in msg
    assert "[100, 32, 5]" in msg and "[100, 32, 3]" in msg


def test_unexpected_tensor_is_refused(tiny_copy):
    path = os.path.join(tiny_copy, "asset", "Vocos.safetensors")
    state = load_file(path)
    state["extra.weight"] = torch.zeros(3)
    save_file(state, path)
    with pytest.raises(errors.WeightsError, match="extra.weight"):
        chattts.Chat().load(
            source="custom", custom_path=tiny_copy, verify=False, raise_on_error=True
        )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_files_load(tiny_copy, dtype, spk):
    for rel in (
        "Embed.safetensors",
        "DVAE.safetensors",
        "Decoder.safetensors",
        "Vocos.safetensors",
        "gpt/model.safetensors",
    ):
        path = os.path.join(tiny_copy, "asset", rel)
        state = {
            k: (v.to(dtype) if v.is_floating_point() else v) for k, v in load_file(path).items()
        }
        save_file(state, path)
    chat = chattts.Chat()
    assert chat.load(source="custom", custom_path=tiny_copy, verify=False, raise_on_error=True)
    assert chat.models.embed.emb_text.weight.dtype == torch.float32
    wav = chat.infer(["hello"], skip_refine_text=True, params_infer_code=quick(spk_emb=spk))[0]
    assert wav.size > 0 and np.isfinite(wav).all()


def test_gpt_file_with_model_prefix_and_embed_tokens(tiny_copy, chat, spk):
    path = os.path.join(tiny_copy, "asset", "gpt", "model.safetensors")
    state = {"model." + k: v for k, v in load_file(path).items()}
    save_file(state, path)
    other = chattts.Chat()
    assert other.load(source="custom", custom_path=tiny_copy, verify=False, raise_on_error=True)
    params = quick(spk_emb=spk, manual_seed=4)
    a = other.infer(["hello"], skip_refine_text=True, params_infer_code=params)[0]
    b = chat.infer(["hello"], skip_refine_text=True, params_infer_code=params)[0]
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * np.abs(b).max())


def test_coef_replaces_the_checkpoint_value(tiny_root, chat):
    from chattts.pipeline.models import encode_coef

    coef = encode_coef(torch.full((1, 100, 1), 0.5))
    other = chattts.Chat()
    assert other.load(source="custom", custom_path=tiny_root, verify=False, coef=coef)
    assert torch.all(other.models.dvae.coef == 0.5)
    assert not torch.all(chat.models.dvae.coef == 0.5)
    with pytest.raises(ValueError):
        other.load(
            source="custom", custom_path=tiny_root, verify=False, coef="bad", raise_on_error=True
        )


def test_load_options(tiny_root, caplog):
    chat = chattts.Chat()
    assert chat.load(source="custom", custom_path=tiny_root, verify=False, use_vllm=True)
    assert "vLLM" in caplog.text
    with pytest.warns(errors.LoadFailedWarning, match="unknown source"):
        assert not chat.load(source="nowhere", custom_path=tiny_root, verify=False)
    with pytest.raises(ValueError):
        chat.load(
            source="custom",
            custom_path=tiny_root,
            verify=False,
            dtype="float64",
            raise_on_error=True,
        )
    with pytest.raises(ValueError):
        chat.load(
            source="custom",
            custom_path=tiny_root,
            verify=False,
            quantize="int4",
            raise_on_error=True,
        )


def test_download_models_custom_and_bad(tiny_root, tmp_path, caplog):
    chat = chattts.Chat()
    assert chat.download_models("custom", custom_path=tiny_root, verify=False) == os.path.abspath(
        tiny_root
    )
    assert chat.download_models("custom", custom_path=str(tmp_path / "none"), verify=False) is None
    assert "not found" in caplog.text


def test_items_of_zero_steps_decode_to_empty_audio(chat):
    from chattts.generation.engine import GenerationState

    state = GenerationState(
        tokens=torch.zeros(2, 4, 4, dtype=torch.long),
        hiddens=torch.zeros(2, 4, 64),
        lengths=torch.tensor([0, 3]),
        finished=torch.tensor([True, True]),
        step=4,
    )
    wavs = chat.models.audio.decode_items(state, use_decoder=True)
    assert wavs[0].size == 0 and wavs[1].size == (2 * 3 - 1) * 256


def test_sha256_map_is_what_verification_uses(tiny_copy):
    from chattts.assets import sha256_file

    with open(os.path.join(tiny_copy, "asset", "tokenizer", "special_tokens_map.json"), "w") as f:
        f.write("{}")
    chat = chattts.Chat()
    chat.sha256_map = {
        rel: sha256_file(os.path.join(tiny_copy, rel)) for rel in chattts.assets.SHA256_MAP
    }
    assert chat.load(source="custom", custom_path=tiny_copy, raise_on_error=True)


def test_long_text_is_split_under_the_limit(chat, spk, monkeypatch):
    seen: list[list[str]] = []
    real = chat.pipeline.passes.code_steps

    def spy(texts, *args, **kwargs):
        seen.append(list(texts))
        return real(texts, *args, **kwargs)

    monkeypatch.setattr(chat.pipeline.passes, "code_steps", spy)
    text = "hello world, " * 30  # no full stop: the reference rule leaves it whole
    wavs = chat.infer(
        text,
        skip_refine_text=True,
        max_split_chars=40,
        params_infer_code=quick(spk_emb=spk, max_new_token=4),
    )
    assert len(wavs) == 1
    pieces = [t for batch in seen[1:] for t in batch]  # seen[0]: the voice carry-over
    assert len(pieces) >= 9 and all(len(p.strip()) <= 40 for p in pieces)
    assert "".join(pieces).replace(" ", "") == text.replace(" ", "")


def test_too_short_speaker_sample_is_clear(chat):
    with pytest.raises(ValueError, match="too short"):
        chat.sample_audio_speaker(np.zeros(512, dtype=np.float32))
    assert isinstance(chat.sample_audio_speaker(np.ones(513, dtype=np.float32) * 0.1), str)


def test_synthesize_items_keep_their_own_speaker_samples(chat, expected, cases):
    smp_a = cases["encode"]["spk_smp"]
    smp_b = chat.sample_audio_speaker(expected["encode.input_wav"].numpy()[:12000])
    pa = quick(spk_smp=smp_a, txt_smp="hello world", manual_seed=5)
    pb = quick(spk_smp=smp_b, txt_smp="chat", manual_seed=6)
    both = next(chat.synthesize(["chat speech", "model test"], [pa, pb]))
    alone_a = next(chat.synthesize(["chat speech"], [pa]))[0]
    alone_b = next(chat.synthesize(["model test"], [pb]))[0]
    for got, want in ((both[0], alone_a), (both[1], alone_b)):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * np.abs(want).max())
