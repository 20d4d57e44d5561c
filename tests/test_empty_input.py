"""One rule for input with nothing to speak (empty, or only emoji, punctuation or pauses once
normalised): the same :class:`EmptyInputError` from ``Chat.infer``, ``Chat.synthesize``, the
Dia-style calls, the CLI (one line), the web UI's callback and the server (a 400 naming
``input``), and never audio made from nothing."""

from __future__ import annotations

import concurrent.futures

import httpx
import numpy as np
import pytest
from conftest import tiny_chat
from test_server import Server

import chattts
from chattts import cli
from chattts.errors import EmptyInputError
from chattts.server import create_app
from chattts.text import has_speech

NOTHING = ["", "   \n", "😀😀", "...", "?!", "“” ‘’", "[uv_break]"]


def code(**kw) -> chattts.InferCodeParams:
    return chattts.InferCodeParams(manual_seed=3, max_new_token=8, show_tqdm=False, **kw)


def test_what_counts_as_speech():
    assert has_speech("a") and has_speech("你") and has_speech("[laugh]")
    assert has_speech("[laugh_1]") and has_speech("[uv_break]hi")
    assert not has_speech("") and not has_speech(" ,. ，。、")
    assert not has_speech("[uv_break][speed_5][break_3]")  # tags hold letters: not speech


@pytest.mark.parametrize("text", NOTHING)
def test_infer_refuses_text_with_nothing_to_speak(chat, text):
    for kw in ({}, {"stream": True}, {"refine_text_only": True}, {"split_text": False}):
        with pytest.raises(EmptyInputError, match="nothing to speak") as e:
            chat.infer(text, params_infer_code=code(), **kw)
        assert e.value.text == text and e.value.index is None
    with pytest.raises(EmptyInputError):
        chat.infer([text], params_infer_code=code())


def test_a_list_names_the_text_at_fault(chat):
    with pytest.raises(EmptyInputError, match=r"'😀' \(text 1\)") as e:
        chat.infer(["Hello.", "😀", "Bye."], params_infer_code=code())
    assert e.value.index == 1
    assert chat.infer([], params_infer_code=code()) == []  # no text: no waveform


def test_a_split_text_drops_pieces_with_nothing_to_speak(chat):
    pieces = chat.pipeline.prepare("Hello there.\n...\n😀\nGood bye.")
    assert pieces and all(has_speech(p) for p in pieces)
    assert len(pieces) == 2
    (wav,) = chat.infer("Hello there.\n...\n😀", params_infer_code=code(), skip_refine_text=True)
    assert wav.size > 0


def test_synthesize_and_dia_refuse_it_too(chat):
    with pytest.raises(EmptyInputError) as e:
        list(chat.synthesize(["Hello.", "😀😀"], code()))
    assert e.value.index == 1
    with pytest.raises(EmptyInputError):
        list(chat.synthesize(["..."], code()))
    for text in ("", "  ", "😀😀", "[S1] Hi there. [S2] 😀"):
        with pytest.raises(EmptyInputError):
            chat.generate(text, max_new_tokens=8)


def test_web_ui_shows_the_same_message(chat):
    import gradio as gr

    from chattts.webui.callbacks import WebUI
    from chattts.webui.generate import Settings

    ui = WebUI(chat)
    with pytest.raises(gr.Error) as e:
        list(ui.generate(Settings(text="😀😀", refine=False, max_steps=8, stream=False)))
    assert str(EmptyInputError("😀😀")) in str(e.value)


# ---- the command line --------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_cli_says_it_in_one_line_and_writes_nothing(
    tiny_root, tmp_path, capsys, restore_logger, stream
):
    out = tmp_path / "out.wav"
    args = ["say", "Hello.", "😀😀", "-o", str(out), "--model-dir", tiny_root, "--no-verify"]
    args += ["--max-new-token", "8", "--no-refine", *(["--stream"] if stream else [])]
    assert cli.main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"chattts: error: {EmptyInputError('😀😀', 1)}"]
    assert list(tmp_path.iterdir()) == []  # no half-written file


def test_cli_blank_text_fails_before_the_model_loads(capsys, restore_logger):
    assert cli.main(["say", "  ", "--model-dir", "/nonexistent"]) == 1
    assert capsys.readouterr().err.strip() == f"chattts: error: {EmptyInputError('  ')}"


# ---- the server --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server():
    srv = Server(create_app(tiny_chat(), max_batch=4))
    yield srv
    srv.stop()


def post(server, text: str, fmt: str = "pcm", **extra) -> httpx.Response:
    body = {"model": "tts-1", "voice": "alloy", "input": text, "response_format": fmt}
    body.update(seed=1, max_new_token=8, **extra)
    return httpx.post(f"{server.url}/v1/audio/speech", json=body, timeout=120)


@pytest.mark.parametrize("text", ["😀😀", "  ", "...", "[uv_break]"])
def test_server_answers_400_naming_input(server, text):
    for extra in ({}, {"stream_format": "sse"}):
        r = post(server, text, **extra)
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert err["param"] == "input" and err["code"] == "empty_input"
        assert err["message"] == f"'input': {EmptyInputError(text)}"


def test_server_one_empty_input_fails_only_itself(server):
    """Batched with a good request, the empty one is refused and the good one is spoken."""
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        good = pool.submit(post, server, "hello world")
        bad = pool.submit(post, server, "😀😀")
        good, bad = good.result(), bad.result()
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "input"
    assert good.status_code == 200 and len(good.content) > 0
    assert np.frombuffer(good.content, "<i2").size > 0
