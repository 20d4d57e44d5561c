"""Validation of requests before any model work: every bad value the reliability probes found
is a clear chattts error naming the field and its range (never a torch error, never accepted
silently); speaker strings and samples are bounded and range-checked."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from chattts import InferCodeParams, RefineTextParams
from chattts.errors import ChatTTSError, InputTypeError, ParameterError, SpeakerError
from chattts.validation import (
    MAX_NEW_TOKEN,
    check_code_params,
    check_refine_params,
    check_texts,
    speaker_audio,
)
from chattts.voices.speaker import (
    _b14_encode,
    _compress,
    decode_sample,
    decode_speaker,
    encode_sample,
    encode_speaker,
)

# (field values, words the message must hold): the library cases of the issue
BAD_CODE = [
    ({"temperature": 0}, "temperature", "[0.0001, 100]"),
    ({"temperature": 1e-300}, "temperature", "[0.0001, 100]"),
    ({"temperature": 5e-324}, "temperature", "[0.0001, 100]"),
    ({"temperature": float("nan")}, "temperature", "finite"),
    ({"temperature": float("inf")}, "temperature", "finite"),
    ({"temperature": -1}, "temperature", "[0.0001, 100]"),
    ({"temperature": [0.3, 0.3, -1.0, 0.3]}, "temperature", "[0.0001, 100]"),
    ({"temperature": []}, "temperature", "at least one"),
    ({"top_P": 1.5}, "top_P", "(0, 1]"),
    ({"top_P": -1}, "top_P", "(0, 1]"),
    ({"top_P": 0.0}, "top_P", "(0, 1]"),
    ({"top_K": -5}, "top_K", "[1,"),
    ({"top_K": 0}, "top_K", "[1,"),
    ({"repetition_penalty": 0}, "repetition_penalty", "[0.01, 100]"),
    ({"repetition_penalty": -1}, "repetition_penalty", "[0.01, 100]"),
    ({"max_new_token": -1}, "max_new_token", f"[1, {MAX_NEW_TOKEN}]"),
    ({"max_new_token": 0}, "max_new_token", f"[1, {MAX_NEW_TOKEN}]"),
    ({"max_new_token": 10**9}, "max_new_token", f"[1, {MAX_NEW_TOKEN}]"),
    ({"min_new_token": -1}, "min_new_token", "[0, 2048]"),
    ({"min_new_token": 3000}, "min_new_token", "[0, 2048]"),
    ({"manual_seed": -1}, "manual_seed", "[0, 9223372036854775807]"),
    ({"manual_seed": 2**63}, "manual_seed", "[0, 9223372036854775807]"),
    ({"manual_seed": 10**5000}, "manual_seed", "5000 digits"),
    ({"stream_batch": 0}, "stream_batch", "[1,"),
    ({"stream_context": -2}, "stream_context", "[0,"),
]


@pytest.mark.parametrize("fields,name,allowed", BAD_CODE)
def test_bad_code_params_name_field_and_range(fields, name, allowed):
    with pytest.raises(ParameterError) as e:
        check_code_params(InferCodeParams(**fields))
    assert isinstance(e.value, ValueError)
    assert f"params_infer_code.{name}" in str(e.value) and allowed in str(e.value)


# the refine pass has no stream fields and no list of temperatures
BAD_REFINE = [
    b for b in BAD_CODE if "stream" not in b[1] and not isinstance(b[0].get("temperature"), list)
]


@pytest.mark.parametrize("fields,name,allowed", BAD_REFINE)
def test_bad_refine_params_name_field_and_range(fields, name, allowed):
    with pytest.raises(ParameterError, match=f"params_refine_text.{name}"):
        check_refine_params(RefineTextParams(**fields))


@pytest.mark.parametrize(
    "fields",
    [{"temperature": True}, {"top_K": 2.5}, {"top_P": "0.7"}, {"manual_seed": 1.0}],
)
def test_wrong_types_are_type_errors(fields):
    with pytest.raises(InputTypeError) as e:
        check_code_params(InferCodeParams(**fields))
    assert isinstance(e.value, TypeError) and next(iter(fields)) in str(e.value)


def test_good_params_pass():
    check_code_params(InferCodeParams())
    check_refine_params(RefineTextParams())
    check_code_params(InferCodeParams(temperature=[0.1, 0.2, 0.3, 0.4], top_P=1.0, top_K=1))
    check_code_params(InferCodeParams(top_P=None, top_K=None, manual_seed=2**63 - 1))
    check_code_params(InferCodeParams(max_new_token=MAX_NEW_TOKEN, min_new_token=MAX_NEW_TOKEN))
    check_code_params(InferCodeParams(temperature=np.float32(0.5), top_K=np.int64(5)))
    with pytest.raises(ParameterError, match="4 values"):
        check_code_params(InferCodeParams(temperature=[0.3, 0.3]), num_vq=4)
    with pytest.raises(InputTypeError, match="RefineTextParams"):
        check_refine_params({"temperature": 0.3})


@pytest.mark.parametrize("text", [None, {"a": "b"}, 3, b"bytes", ["ok", 3], ("ok", None)])
def test_texts_must_be_str_or_list_of_str(text):
    with pytest.raises(InputTypeError, match="str or a list of str") as e:
        check_texts(text)
    assert isinstance(e.value, TypeError)
    check_texts("fine")
    check_texts(["a", "b"])


@pytest.mark.parametrize(
    "fields",
    [
        {"temperature": 0},
        {"temperature": 1e-300},
        {"temperature": float("nan")},
        {"repetition_penalty": 0},
        {"temperature": -1},
        {"top_P": 1.5},
        {"top_K": -5},
        {"repetition_penalty": -1},
        {"max_new_token": -1},
        {"max_new_token": 10**9},
    ],
)
def test_infer_rejects_before_any_model_work(chat, fields):
    with pytest.raises(ParameterError):
        chat.infer("hello", skip_refine_text=True, params_infer_code=InferCodeParams(**fields))
    with pytest.raises(ParameterError):
        chat.infer("hello", refine_text_only=True, params_refine_text=RefineTextParams(**fields))


@pytest.mark.parametrize("text", [None, {"a": "hello"}])
def test_infer_rejects_texts_that_are_not_str(chat, text):
    with pytest.raises(InputTypeError, match=type(text).__name__):
        chat.infer(text)


def test_extreme_but_allowed_values_generate(chat):
    """The ends of every range sample without a torch error, both passes."""
    for fields in (
        {"temperature": 1e-4, "repetition_penalty": 100.0, "top_P": 1.0, "top_K": 1},
        {"temperature": 1e-4, "repetition_penalty": 0.01, "top_P": 1e-9, "top_K": 1 << 20},
        {"temperature": 100.0, "repetition_penalty": 100.0, "top_P": None, "top_K": None},
    ):
        code = InferCodeParams(max_new_token=24, manual_seed=3, show_tqdm=False, **fields)
        wavs = chat.infer("hello world", skip_refine_text=True, params_infer_code=code)
        assert len(wavs) == 1 and np.isfinite(wavs[0]).all()
        refine = RefineTextParams(max_new_token=24, manual_seed=3, show_tqdm=False, **fields)
        assert isinstance(
            chat.infer("hello", refine_text_only=True, params_refine_text=refine), str
        )


# ---- speaker samples and strings ---------------------------------------------------------


def test_spk_smp_with_out_of_range_codes_is_a_speaker_error(chat):
    bad = encode_sample(torch.full((4, 6), 700))
    with pytest.raises(SpeakerError, match="out of range"):
        decode_sample(bad, 4)
    code = InferCodeParams(spk_smp=bad, txt_smp="hi", max_new_token=8, show_tqdm=False)
    with pytest.raises(SpeakerError, match="out of range"):
        chat.infer("hello", skip_refine_text=True, params_infer_code=code)
    good = torch.randint(0, 626, (4, 6))
    assert torch.equal(decode_sample(encode_sample(good), 4), good)


def test_decompression_is_bounded():
    """A few kilobytes that expand to 64 MB are refused after reading the bound only."""
    bomb = _b14_encode(_compress(b"\0" * (64 << 20)))
    assert len(bomb) < 20_000
    with pytest.raises(SpeakerError, match="more than 1536 bytes"):
        decode_speaker(bomb, 768)
    with pytest.raises(SpeakerError, match="more than 65536 bytes"):
        decode_speaker(bomb)
    header = np.array([4, 10], dtype="<u2").tobytes()
    with pytest.raises(SpeakerError, match="more than 80 bytes"):
        decode_sample(_b14_encode(header + _compress(b"\0" * (64 << 20))), 4)
    with pytest.raises(SpeakerError, match="truncated"):
        decode_speaker(_b14_encode(_compress(b"\1" * 1536)[:-8]), 768)
    spk = torch.randn(768)
    assert torch.equal(decode_speaker(encode_speaker(spk), 768), spk.half())


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_speaker_audio_is_refused(chat, value):
    wav = np.zeros(8000, dtype=np.float32)
    wav[100] = value
    with pytest.raises(ParameterError, match="NaN or infinite"):
        chat.sample_audio_speaker(wav)


def test_integer_speaker_audio_is_scaled_like_pcm(chat):
    rng = np.random.default_rng(0)
    f = (rng.standard_normal(8000) * 0.1).clip(-1, 1).astype(np.float32)
    i16 = np.round(f * 32768).clip(-32768, 32767).astype(np.int16)
    np.testing.assert_allclose(speaker_audio(i16), i16 / 32768.0, atol=1e-7)
    u8 = np.array([0, 128, 255], dtype=np.uint8)
    np.testing.assert_allclose(speaker_audio(u8), [-1.0, 0.0, 127 / 128], atol=1e-7)
    assert chat.sample_audio_speaker(i16) == chat.sample_audio_speaker(i16 / 32768.0)
    with pytest.raises(ParameterError, match="mono"):
        speaker_audio(np.zeros((2, 100)))
    with pytest.raises(ChatTTSError):
        speaker_audio(np.array(["a", "b"]))
