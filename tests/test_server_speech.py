"""The server's finished speech: captions (JSON and SSE events), SSML input, finishing fields,
and the Google Cloud Text-to-Speech shape, against uvicorn on 127.0.0.1 (tiny model)."""

from __future__ import annotations

import base64
import json

import httpx
import numpy as np
import pytest
from _speech import RATE, decode, pcm
from conftest import tiny_chat
from test_server import Server

import chattts
from chattts.audio import load_audio
from chattts.captions import MAX_CHARS
from chattts.server import create_app

STEPS = 20


@pytest.fixture(scope="module")
def chat() -> chattts.Chat:
    return tiny_chat()


@pytest.fixture(scope="module")
def server(chat):
    srv = Server(create_app(chat, max_batch=4))
    yield srv
    srv.stop()


def post(server, path: str, **body) -> httpx.Response:
    payload = {"model": "tts-1", "voice": "alloy", "seed": 3, "max_new_token": STEPS, **body}
    return httpx.post(f"{server.url}{path}", json=payload, timeout=300)


TEXT = "Hello there. How are you today? Fine, thanks."


def test_captioned_speech_gives_the_audio_and_its_measured_captions(server):
    r = post(server, "/v1/audio/captioned_speech", input=TEXT, response_format="wav")
    assert r.status_code == 200, r.text
    out = r.json()
    audio = load_audio(base64.b64decode(out["audio"]), RATE)
    assert out["format"] == "wav" and audio.size == round(out["duration"] * RATE)
    caps = out["captions"]
    assert [c["text"] for c in caps] == ["Hello there.", "How are you today", "Fine, thanks."]
    last = 0.0
    for c in caps:  # in order, inside the audio, never overlapping
        assert last <= c["start"] < c["end"] <= out["duration"] + 1e-9
        last = c["end"]
    plain = pcm(post(server, "/v1/audio/speech", input=TEXT, response_format="pcm").content)
    assert plain.size == audio.size  # the same speech as /v1/audio/speech


def test_captioned_speech_streams_caption_events_with_the_audio(server):
    r = post(
        server, "/v1/audio/captioned_speech", input=TEXT, response_format="pcm", stream_format="sse"
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(x[6:]) for x in r.text.split("\n\n") if x.startswith("data: ")]
    kinds = [e["type"] for e in events]
    assert kinds[-1] == "speech.audio.done" and kinds.count("speech.caption") == 3
    heard = 0.0
    for e in events:  # a caption comes with, or after, the last of its audio
        if e["type"] == "speech.audio.delta":
            heard += len(base64.b64decode(e["audio"])) / 2 / RATE
        elif e["type"] == "speech.caption":
            assert e["end"] <= heard + 1e-6


def test_a_long_sentence_is_captioned_clause_by_clause(server):
    text = (
        "When the evening came the travellers reached the river, where the boatman waited "
        "with his lantern, and they crossed in silence while the stars came out."
    )
    r = post(server, "/v1/audio/captioned_speech", input=text, max_new_token=8)
    caps = r.json()["captions"]
    assert len(caps) > 1 and all(len(c["text"]) <= 2 * MAX_CHARS for c in caps)


def test_ssml_input_is_spoken_with_its_breaks_and_marks(server):
    doc = '<speak>Hello there. <break time="600ms"/><mark name="m"/> Goodbye.</speak>'
    r = post(server, "/v1/audio/captioned_speech", input=doc, response_format="pcm")
    assert r.status_code == 200, r.text
    out = r.json()
    a, b = out["captions"]
    assert b["start"] - a["end"] == pytest.approx(0.6, abs=0.01)
    assert out["marks"] == [{"name": "m", "time": pytest.approx(a["end"] + 0.6, abs=1e-6)}]
    bad = post(server, "/v1/audio/speech", input="<speak><prosody rate='zoom'>x</prosody></speak>")
    err = bad.json()["error"]
    assert bad.status_code == 400 and err["param"] == "input" and "line 1" in err["message"]


def test_loudness_and_pitch_fields_finish_the_audio(server):
    args = {"input": "chat speech", "response_format": "pcm"}
    plain = pcm(post(server, "/v1/audio/speech", **args).content)
    loud = post(server, "/v1/audio/speech", **args, loudness=-12)
    assert loud.status_code == 200
    louder = pcm(loud.content)
    assert louder.size == plain.size and np.abs(louder).max() > np.abs(plain).max()
    for field, value in (("loudness", 3), ("pitch", 20), ("gain", 99), ("chattts_speed", 12)):
        r = post(server, "/v1/audio/speech", input="chat speech", **{field: value})
        assert r.status_code == 400 and r.json()["error"]["param"] == field


def test_empty_and_ssml_without_words_are_400_naming_input(server):
    for text in ("😀😀", "<speak><break time='1s'/></speak>"):
        for path in ("/v1/audio/speech", "/v1/audio/captioned_speech"):
            r = post(server, path, input=text)
            assert r.status_code == 400 and r.json()["error"]["param"] == "input", (path, text)


def test_every_format_of_captioned_speech_decodes(server):
    for fmt in ("mp3", "flac", "opus"):
        out = post(server, "/v1/audio/captioned_speech", input="chat speech", response_format=fmt)
        wav = decode(base64.b64decode(out.json()["audio"]), fmt)
        assert wav.size > 0, fmt


def test_speed_without_the_stretch_extra_is_a_400_naming_the_field(server, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pedalboard", None)  # as if not installed
    r = post(server, "/v1/audio/speech", input="Hello.", speed=1.5)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == "speed" and "pip install 'chattts[stretch]'" in err["message"]
    r = post(server, "/v1/audio/speech", input="Hello.", pitch=2.0)
    assert r.status_code == 400 and r.json()["error"]["param"] == "pitch"
    r = post(server, "/v1/audio/speech", input="Hello.", speed=1.0, response_format="pcm")
    assert r.status_code == 200 and len(r.content) > 0  # speed 1 needs no stretching
