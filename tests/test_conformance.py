"""Every case of the conformance fixture (tests/fixtures/CONFORMANCE.md), within its tolerances."""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import torch
from conftest import assert_close, trim

import chattts
from chattts.model.dvae import DVAE, Decoder
from chattts.model.vocos import load_vocos, vocos_decode
from chattts.pipeline.passes import code_prompt, last
from chattts.voices.speaker import decode_speaker

P = chattts.InferCodeParams
R = chattts.RefineTextParams


@pytest.fixture(scope="module", params=["torch", "onnxruntime"])
def chat(request):
    """Every case on the torch float32 engine and on the ONNX Runtime graph exported without
    quantisation: both give the reference's codes and audio."""
    return request.getfixturevalue("chat" if request.param == "torch" else "ort_chat")


def code_params(cases, spk, key):
    raw = dict(cases[key]["params_infer_code"])
    if raw.get("spk_emb") == "speaker.spk_emb":
        raw["spk_emb"] = spk
    if raw.get("spk_smp") == "encode.spk_smp":
        raw["spk_smp"] = cases["encode"]["spk_smp"]
    return P(show_tqdm=False, **raw)


def test_speaker(chat, cases, expected):
    torch.manual_seed(cases["speaker"]["torch_manual_seed"])
    spk = chat.sample_random_speaker()
    assert spk == cases["speaker"]["spk_emb"]
    assert_close(decode_speaker(spk).float(), expected["speaker.decoded"], "speaker.decoded")
    assert chat.sample_random_speaker(seed=1234) == spk


def test_tokenize(chat, cases, expected, spk):
    case = cases["tokenize"]
    decorated = [code_prompt(t, case["prompt"], None, case["with_spk_emb"]) for t in case["texts"]]
    assert decorated == case["decorated"]
    models = chat.models
    batch = models.tokenizer.encode(decorated, models.config.gpt.num_vq)
    assert torch.equal(batch.input_ids, expected["tokenize.input_ids"])
    assert torch.equal(batch.attention_mask, expected["tokenize.attention_mask"])
    assert torch.equal(batch.text_mask, expected["tokenize.text_mask"].bool())
    embeds, _ = chat.pipeline.passes.code_inputs(
        case["texts"], P(spk_emb=spk, prompt=case["prompt"])
    )
    assert_close(embeds, expected["tokenize.embedding_with_speaker"], "embedding_with_speaker")


def test_refine_text_only(chat, cases):
    case = cases["refine_text_only"]
    params = R(show_tqdm=False, **case["params_refine_text"])
    result = chat.infer(
        case["texts"],
        refine_text_only=True,
        split_text=False,
        do_text_normalization=False,
        params_refine_text=params,
    )
    assert result == case["result"]


def test_skip_refine_decoder_and_dvae(chat, cases, expected, spk):
    for use_decoder in (1, 0):
        key = f"infer.skip_refine.decoder_{use_decoder}"
        case = cases[key]
        wavs = chat.infer(
            case["texts"],
            skip_refine_text=True,
            split_text=False,
            use_decoder=bool(use_decoder),
            do_text_normalization=False,
            params_infer_code=code_params(cases, spk, key),
        )
        assert len(wavs) == case["n_wavs"]
        for i, wav in enumerate(wavs):
            assert wav.dtype == np.float32 and wav.ndim == 1
            assert_close(trim(wav), trim(expected[f"{key}.wav{i}"].numpy()), f"{key}.wav{i}")


def test_code_pass_and_modules(chat, cases, spk, expected, tiny_root):
    params = code_params(cases, spk, "code_pass")
    state = last(chat.pipeline.passes.code_steps([cases["code_pass"]["text"]], params))
    assert torch.equal(state.item_tokens(0), expected["code_pass.ids"])
    assert_close(state.item_hiddens(0), expected["code_pass.hiddens"], "code_pass.hiddens")
    # each module loads alone from its file, dimensions read from its shapes
    asset = os.path.join(tiny_root, "asset")
    dvae = DVAE.from_file(os.path.join(asset, "DVAE.safetensors"))
    decoder = Decoder.from_file(os.path.join(asset, "Decoder.safetensors"))
    vocos = load_vocos(os.path.join(asset, "Vocos.safetensors"))
    ids, hiddens = expected["code_pass.ids"], expected["code_pass.hiddens"]
    assert_close(dvae.decode(ids.t()[None]), expected["dvae.decode.mel"], "dvae.decode.mel")
    assert_close(
        decoder.decode(hiddens.t()[None]), expected["decoder.decode.mel"], "decoder.decode.mel"
    )
    assert_close(
        vocos_decode(vocos, expected["decoder.decode.mel"]),
        expected["vocos.decode.wav"],
        "vocos.decode.wav",
    )


def test_encode(chat, cases, expected):
    smp = chat.sample_audio_speaker(expected["encode.input_wav"].numpy())
    assert smp == cases["encode"]["spk_smp"]
    codes = chat.models.dvae.encode(expected["encode.input_wav"][None])[0]
    assert torch.equal(codes, expected["encode.codes"].long())


def test_zero_shot(chat, cases, expected, spk):
    case = cases["infer.zero_shot"]
    wavs = chat.infer(
        [case["text"]],
        skip_refine_text=True,
        split_text=False,
        do_text_normalization=False,
        params_infer_code=code_params(cases, spk, "infer.zero_shot"),
    )
    assert_close(trim(wavs[0]), trim(expected["infer.zero_shot.wav0"].numpy()), "zero_shot")


def test_full(chat, cases, expected, spk):
    case = cases["infer.full"]
    wavs = chat.infer(
        case["texts"],
        split_text=False,
        do_text_normalization=False,
        params_refine_text=R(show_tqdm=False, **case["params_refine_text"]),
        params_infer_code=code_params(cases, spk, "infer.full"),
    )
    assert_close(trim(wavs[0]), trim(expected["infer.full.wav0"].numpy()), "infer.full")


def test_eos_batch(chat, cases, expected, spk):
    case = cases["eos.batch"]
    params = code_params(cases, spk, "eos.batch")
    state = last(chat.pipeline.passes.code_steps(case["texts"], params))
    assert state.lengths.tolist() == case["steps"]
    for i in range(len(case["texts"])):
        assert torch.equal(state.item_tokens(i), expected[f"eos.batch.ids{i}"])
    wavs = chat.infer(
        case["texts"],
        skip_refine_text=True,
        split_text=False,
        do_text_normalization=False,
        params_infer_code=params,
    )
    for i, wav in enumerate(wavs):
        assert_close(trim(wav), trim(expected[f"eos.batch.wav{i}"].numpy()), f"eos.wav{i}")


def test_repetition_window(chat, cases, expected, spk):
    case = cases["repetition.window"]
    params = code_params(cases, spk, "repetition.window")
    state = last(chat.pipeline.passes.code_steps([case["text"]], params))
    assert torch.equal(state.item_tokens(0), expected["repetition.window.ids"])
    wavs = chat.infer(
        [case["text"]],
        skip_refine_text=True,
        split_text=False,
        do_text_normalization=False,
        params_infer_code=params,
    )
    assert_close(trim(wavs[0]), trim(expected["repetition.window.wav0"].numpy()), "rep.wav0")


def test_split_text(chat, cases, expected, spk):
    case = cases["split_text"]
    params = code_params(cases, spk, "split_text")
    before = copy.deepcopy(vars(params))
    wavs = chat.infer(
        case["text"],
        skip_refine_text=True,
        split_text=True,
        do_text_normalization=False,
        params_infer_code=params,
    )
    assert len(wavs) == 1
    joined = np.concatenate(
        [trim(expected["split_text.wav0"].numpy()), trim(expected["split_text.wav1"].numpy())]
    )
    assert_close(wavs[0], joined, "split_text")
    assert vars(params) == before
    derived = chat.pipeline.voice_from_first(case["sentences"], params, True, None)
    assert derived.spk_smp == case["derived_spk_smp"]
    assert derived.txt_smp == case["derived_txt_smp"]


def test_long_list_is_one_batch(chat, tiny_root, spk):
    """Without split_text the reference runs the whole list as one batch with one seed (its
    max_split_batch only applies to split text): items 5 and 6 sound as the reference's."""
    import json

    from safetensors.torch import load_file

    folder = os.path.join(tiny_root, "expected")
    with open(os.path.join(folder, "long_list.json"), encoding="utf-8") as f:
        case = json.load(f)["infer.long_list"]
    want = load_file(os.path.join(folder, "long_list.safetensors"))
    raw = dict(case["params_infer_code"], spk_emb=spk)
    wavs = chat.infer(
        case["texts"],
        skip_refine_text=True,
        split_text=False,
        do_text_normalization=False,
        max_split_batch=case["max_split_batch"],
        params_infer_code=P(show_tqdm=False, **raw),
    )
    assert len(wavs) == len(case["texts"]) == 6
    for i, wav in enumerate(wavs):
        ours = wav[np.abs(wav) > 1e-5]  # the reference's own final step
        assert_close(ours, want[f"infer.long_list.wav{i}"].numpy(), f"long_list.wav{i}")
