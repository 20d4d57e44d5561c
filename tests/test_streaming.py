"""Streaming: windows with left context and lookahead give final chunks, joined exactly."""

from __future__ import annotations

import numpy as np
import pytest

import chattts
from chattts.decode.stream import RowWindows, stream_batch
from chattts.generation.engine import Interrupt

P = chattts.InferCodeParams
HOP = 256

# the tiny model's Decoder and Vocos see about ±9 code steps: 12 covers them
COVER = dict(stream_lookahead=12, stream_context=12)


@pytest.fixture(scope="module", params=["torch", "onnxruntime-int8"])
def chat(request):
    """Streaming on the torch float32 engine and on ONNX Runtime with int8 weights (what
    ``quantize="int8"`` runs on the CPU)."""
    return request.getfixturevalue("chat" if request.param == "torch" else "ort_int8_chat")


def params(spk, **kw):
    base = dict(show_tqdm=False, spk_emb=spk, manual_seed=5, max_new_token=60)
    base.update(kw)
    return P(**base)


def collect(chat, texts, p, use_decoder=True):
    """(chunks per item, engine step at which each chunk came out)."""
    passes = chat.pipeline.passes
    seen = {"step": 0}

    def counting(steps):
        for state in steps:
            seen["step"] = state.step
            yield state

    steps = counting(passes.code_steps(texts, p))
    chunks, at = [], []
    first = p[0] if isinstance(p, list) else p
    for parts in stream_batch(chat.models.audio, steps, len(texts), first, use_decoder):
        chunks.append(parts)
        at.append(seen["step"])
    return chunks, at


def whole(chat, texts, p, use_decoder=True):
    from chattts.pipeline.passes import last

    state = last(chat.pipeline.passes.code_steps(texts, p))
    return chat.models.audio.decode_items(state, use_decoder, padded=False), state


@pytest.mark.parametrize("use_decoder", [True, False])
def test_streamed_equals_whole_when_windows_cover_the_receptive_field(chat, spk, use_decoder):
    p = params(spk, stream_first_batch=4, stream_batch=10, **COVER)
    chunks, _ = collect(chat, ["hello world"], p, use_decoder)
    ref, state = whole(chat, ["hello world"], p, use_decoder)
    joined = np.concatenate([c[0] for c in chunks])
    assert joined.size == ref[0].size == (2 * int(state.lengths[0]) - 1) * HOP
    assert np.linalg.norm(joined - ref[0]) / np.linalg.norm(ref[0]) <= 1e-3
    # each chunk is the matching slice of the whole: nothing repeated or dropped at a join
    sizes = [c[0].size for c in chunks]
    assert sizes[0] == 4 * 2 * HOP and all(s == 10 * 2 * HOP for s in sizes[1:-1])
    start = 0
    for c in chunks:
        np.testing.assert_allclose(c[0], ref[0][start : start + c[0].size], atol=1e-4)
        start += c[0].size


def test_default_windows_are_close_and_exact_in_length(chat, spk):
    p = params(spk)
    chunks, _ = collect(chat, ["hello world"], p)
    ref, _ = whole(chat, ["hello world"], p)
    joined = np.concatenate([c[0] for c in chunks])
    assert joined.size == ref[0].size
    assert np.linalg.norm(joined - ref[0]) / np.linalg.norm(ref[0]) <= 0.05


def test_first_chunk_comes_after_first_batch_plus_lookahead_steps(chat, spk):
    p = params(spk, stream_first_batch=3, stream_batch=8, stream_lookahead=2, stream_context=4)
    chunks, at = collect(chat, ["hello world"], p)
    assert at[0] == 3 + 2
    assert chunks[0][0].size == 3 * 2 * HOP
    assert at[1] == 3 + 8 + 2


def test_batch_of_different_lengths_streams_each_item_as_alone(chat, spk):
    texts = ["hello world", "chat speech is here"]
    plist = [
        params(spk, manual_seed=1, max_new_token=14, **COVER),
        params(spk, manual_seed=2, max_new_token=33, **COVER),
    ]
    chunks, _ = collect(chat, texts, plist)
    ref, state = whole(chat, texts, plist)
    assert state.lengths.tolist() == [14, 33]
    for i in range(2):
        joined = np.concatenate([c[i] for c in chunks])
        assert joined.size == ref[i].size
        assert np.linalg.norm(joined - ref[i]) / np.linalg.norm(ref[i]) <= 1e-3


def test_infer_stream_gives_batch_arrays(chat, spk):
    p = params(spk, max_new_token=30)
    out = list(
        chat.infer(
            ["hello world", "chat speech"], stream=True, skip_refine_text=True, params_infer_code=p
        )
    )
    assert all(c.ndim == 2 and c.shape[0] == 2 and c.dtype == np.float32 for c in out)


def test_interrupting_a_stream_stops_within_one_step(chat, spk):
    flag = Interrupt()
    p = params(spk, max_new_token=200, stream_first_batch=2, stream_lookahead=1)
    ran = {"step": 0}

    def counting(steps):
        for state in steps:
            ran["step"] = state.step
            yield state

    steps = counting(chat.pipeline.passes.code_steps(["hello world"], p, flag))
    stream = stream_batch(chat.models.audio, steps, 1, p, True)
    next(stream)
    at = ran["step"]
    flag.set()
    rest = list(stream)
    assert ran["step"] == at
    assert sum(c[0].size for c in rest) <= (2 * at - 1) * HOP


def test_window_parameters_are_checked(chat):
    with pytest.raises(ValueError):
        RowWindows(0, 24, 8, 8, 256)
    with pytest.raises(ValueError):
        RowWindows(8, 24, 0, 8, 256)
