"""Clients written for the reference run unchanged: its API shapes, on the tiny model."""

import math
import typing

import numpy as np
import pytest

import chattts
from chattts.errors import UnsupportedOptionError

P = chattts.InferCodeParams


def test_params_annotations_resolve_without_torch_and_compare_by_identity():
    hints = typing.get_type_hints(chattts.InferCodeParams)
    assert hints["spk_emb"] == typing.Optional[str]
    a, b = P(), P()
    assert a != b and a == a  # identity, as the reference's
    assert len({a, b}) == 2  # hashable


def test_a_fastapi_app_with_params_in_its_request_model(chat, spk):
    pydantic = pytest.importorskip("pydantic")
    fastapi = pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    class Request(pydantic.BaseModel):
        text: list[str]
        params_infer_code: chattts.Chat.InferCodeParams

    app = fastapi.FastAPI()

    @app.post("/tts")
    def tts(req: Request) -> dict:
        req.params_infer_code.max_new_token = 8
        req.params_infer_code.show_tqdm = False
        wavs = chat.infer(req.text, skip_refine_text=True, params_infer_code=req.params_infer_code)
        return {"samples": [int(w.size) for w in wavs], "spk": req.params_infer_code.spk_emb}

    body = {"text": ["hello world"], "params_infer_code": {"spk_emb": spk, "manual_seed": 3}}
    r = TestClient(app).post("/tts", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["spk"] == spk and r.json()["samples"][0] > 0


def test_reference_web_ui_flow_reads_coef_and_reloads_with_it(tiny_root):
    chat = chattts.Chat()
    assert chat.load(source="custom", custom_path=tiny_root, verify=False, device="cpu")
    coef = chat.coef
    assert isinstance(coef, str) and coef
    assert chat.device == chat.device_gpt == chat.models.device
    assert chat.load(source="custom", custom_path=tiny_root, verify=False, device="cpu", coef=coef)
    assert chat.coef == coef


def test_stream_of_a_batch_with_an_early_end_scaled_by_each_chunks_peak(chat, spk):
    params = P(spk_emb=spk, manual_seed=2, max_new_token=40, show_tqdm=False)
    texts = ["hello world", "chat speech model test"]
    chunks = list(chat.infer(texts, stream=True, skip_refine_text=True, params_infer_code=params))
    scaled = []
    for chunk in chunks:  # the reference's web demo divides each chunk by its peak
        peak = np.abs(chunk).max()
        scaled.append(chunk / peak if peak > 0 else chunk)
    assert all(np.isfinite(c).all() for c in scaled)
    # unscaled, the rows join into the whole waveforms: no gap, no overlap, no click (the
    # whole batch is decoded zero-padded, as the reference does, so the last 0.1 s of the
    # shorter item hear the padding there; the stream decodes each item on its own data)
    whole = chat.infer(texts, skip_refine_text=True, params_infer_code=params)
    rows = np.concatenate(chunks, axis=1)
    longest = max(w.size for w in whole)
    for i, wav in enumerate(whole):
        joined = chattts.chat.trim_silence(rows[i])
        assert joined.shape == wav.shape
        keep = wav.size if wav.size == longest else wav.size - 2400
        tol = 0.05 * float(np.abs(wav).max())
        np.testing.assert_allclose(joined[:keep], wav[:keep], atol=tol)


def test_unused_reference_stream_options_are_rejected_not_ignored(chat):
    with pytest.raises(UnsupportedOptionError, match="stream_speed"):
        chat.infer(["hi"], skip_refine_text=True, params_infer_code=P(stream_speed=24000))


def test_generate_batch_takes_seed_like_generate(chat):
    a = chat.generate_batch(["hello world"], seed=5, max_new_tokens=8)
    b = chat.generate("hello world", seed=5, max_new_tokens=8)
    np.testing.assert_array_equal(a[0], b)


def test_download_models_defaults_to_local(tmp_path, monkeypatch):
    import inspect

    assert inspect.signature(chattts.Chat.download_models).parameters["source"].default == "local"


@pytest.mark.parametrize("old", sorted(chattts.MOVED_MODULES))
def test_moved_modules_import_under_their_old_names(old):
    """Code written against an old module path (``chattts.voices.library``...) still imports: it
    gets the module itself, with a DeprecationWarning that names the new path."""
    import importlib
    import sys

    new = importlib.import_module(chattts.MOVED_MODULES[old])
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=chattts.MOVED_MODULES[old]):
        module = importlib.import_module(old)
    assert module is new


def _reference_float_to_int16(row: np.ndarray) -> np.ndarray:
    """The arithmetic of the reference's command-line client (``examples/cmd/run.py
    --stream``), per row of each streamed chunk: integer division by ceil(peak)·32768."""
    am = int(math.ceil(float(np.abs(row).max())) * 32768)
    am = 32767 * 32768 // am  # ZeroDivisionError on a row of exact zeros
    return np.multiply(row, am).astype(np.int16)


def test_streamed_list_survives_the_reference_clients_per_row_scaling(chat, cases, spk):
    """Items that end at different steps: the rows of ended items are not exact zeros, so the
    reference's client runs, and they are digital silence once converted to 16-bit PCM."""
    case = cases["eos.batch"]
    raw = dict(case["params_infer_code"], spk_emb=spk)
    params = P(show_tqdm=False, **raw)
    chunks = chat.infer(
        case["texts"],
        stream=True,
        skip_refine_text=True,
        split_text=False,
        do_text_normalization=False,
        params_infer_code=params,
    )
    ended_rows = 0
    pcm: list[list[np.ndarray]] = [[] for _ in case["texts"]]
    for chunk in chunks:
        for i, row in enumerate(chunk):
            out = _reference_float_to_int16(row)
            pcm[i].append(out)
            if float(np.abs(row).max()) < 1e-6:  # the item has ended
                ended_rows += 1
                assert not out.any()
    assert len(set(case["steps"])) > 1 and ended_rows > 0
    for i, steps in enumerate(case["steps"]):  # each item's audio, then silence
        joined = np.concatenate(pcm[i])
        assert np.flatnonzero(joined).max() < (2 * steps - 1) * 256
