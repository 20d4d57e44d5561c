"""``POST /v1/text:synthesize``, Google Cloud Text-to-Speech's REST shape, against uvicorn on
127.0.0.1 (tiny model) with a plain HTTP client and Google's documented JSON: text and SSML,
each encoding decoded back, rates, pitch, gain, sample rates, and errors in Google's shape."""

from __future__ import annotations

import base64
import io
import sys
import wave

import httpx
import numpy as np
import pytest
from _speech import LSB, RATE, assert_same_audio, pcm
from conftest import tiny_chat
from test_server import Server

import chattts
from chattts.audio import load_audio
from chattts.errors import QueueFullError
from chattts.server import create_app
from chattts.server.google import GOOGLE_PATH

KEY = "s3cret"
STEPS = 20
TEXT = "Hello there. How are you?"


@pytest.fixture(scope="module")
def chat() -> chattts.Chat:
    return tiny_chat()


@pytest.fixture(scope="module")
def server(chat):
    srv = Server(create_app(chat, max_batch=4, max_new_token=STEPS, api_key=KEY))
    yield srv
    srv.stop()


def body(text: str = TEXT, ssml: bool = False, voice=None, **audio) -> dict:
    """Google's documented request body (docs: text:synthesize)."""
    return {
        "input": {"ssml" if ssml else "text": text},
        "voice": {
            "languageCode": "en-US",
            "name": "alloy",
            "ssmlGender": "FEMALE",
            **(voice or {}),
        },
        "audioConfig": {"audioEncoding": "LINEAR16", **audio},
    }


def synthesize(server, payload, headers=None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {KEY}"} if headers is None else headers
    return httpx.post(f"{server.url}{GOOGLE_PATH}", json=payload, headers=headers, timeout=300)


def content(r: httpx.Response) -> bytes:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    out = r.json()
    assert list(out) == ["audioContent"]
    return base64.b64decode(out["audioContent"])


def linear16(data: bytes) -> tuple[np.ndarray, int]:
    """A LINEAR16 answer (a WAV file, header included) -> (samples, rate)."""
    with wave.open(io.BytesIO(data)) as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
        frames, rate = w.readframes(w.getnframes()), w.getframerate()
    return pcm(frames), rate


@pytest.fixture(scope="module")
def plain(server) -> np.ndarray:
    wav, rate = linear16(content(synthesize(server, body())))
    assert rate == RATE and wav.size > 2000
    return wav


def error(r: httpx.Response, status: int) -> dict:
    """Google's error body: ``{"error": {"code", "message", "status"[, "details"]}}``."""
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == status and isinstance(err["message"], str) and err["message"]
    return err


def test_linear16_is_a_wav_file_of_the_same_speech_as_the_openai_route(server, plain):
    again, _ = linear16(content(synthesize(server, body())))
    np.testing.assert_array_equal(again, plain)  # Google's voices say a text the same way
    # the same request on /v1/audio/speech: same worker, same mapping (seed 0, English)
    openai = httpx.post(
        f"{server.url}/v1/audio/speech",
        json={
            "model": "tts-1",
            "input": TEXT,
            "voice": "alloy",
            "seed": 0,
            "response_format": "pcm",
        },
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=300,
    )
    assert_same_audio(plain, pcm(openai.content), "google vs openai")
    other = linear16(content(synthesize(server, body(voice={"name": "seed_5"}))))[0]
    assert other.size != plain.size or np.abs(other - plain).max() > 0.01


@pytest.mark.parametrize("encoding", ["MP3", "OGG_OPUS", 2, 3])
def test_every_encoding_decodes_to_the_same_speech(server, plain, encoding):
    data = content(synthesize(server, body(audioEncoding=encoding)))
    name = {2: "MP3", 3: "OGG_OPUS"}.get(encoding, encoding)
    assert data[:4] == b"OggS" if name == "OGG_OPUS" else data[:3] in (b"ID3", b"\xff\xfb")
    wav = load_audio(data, RATE)
    assert abs(wav.size - plain.size) <= 1200, (wav.size, plain.size)  # codec padding
    n = min(wav.size, plain.size)
    corr = np.corrcoef(wav[:n], plain[:n])[0, 1]
    assert corr > 0.8, corr  # lossy (the tiny model's noise-like audio), but the same speech


def test_ssml_input_speaks_its_breaks_and_text_input_is_never_ssml(server, plain):
    doc = '<speak>Hello there. <break time="500ms"/> How are you?</speak>'
    wav, _ = linear16(content(synthesize(server, body(doc, ssml=True))))
    # the same two segments (seeds 0 and 1) with half a second of silence between them
    assert wav.size == plain.size + RATE // 2
    bad = "<speak><prosody rate='zoom'>Hi there</prosody></speak>"
    err = error(synthesize(server, body(bad, ssml=True)), 400)
    assert err["status"] == "INVALID_ARGUMENT" and "line 1, column" in err["message"]
    assert err["details"][0]["reason"] == "INVALID_SSML"
    assert err["details"][0]["metadata"] == {"field": "input.ssml"}
    assert synthesize(server, body(bad)).status_code == 200  # input.text is plain text


def test_speaking_rate_is_exact_tempo_and_pitch_keeps_the_length(server, plain):
    fast, _ = linear16(content(synthesize(server, body(speakingRate=2.0))))
    assert abs(fast.size - plain.size / 2) <= 2  # two segments, each rounded
    same, _ = linear16(content(synthesize(server, body(speakingRate=0))))  # 0: the default
    np.testing.assert_array_equal(same, plain)
    high, _ = linear16(content(synthesize(server, body(pitch=-4.5))))
    assert high.size == plain.size and np.abs(high - plain).max() > 0.01


def test_volume_gain_db_scales_the_audio(server, plain):
    quiet, _ = linear16(content(synthesize(server, body(volumeGainDb=-6.0))))
    mid = slice(2400, plain.size - 2400)  # past the 5 ms fades at the ends
    np.testing.assert_allclose(quiet[mid], plain[mid] * 10 ** (-6 / 20), atol=2 * LSB)
    faint, _ = linear16(content(synthesize(server, body(volumeGainDb=-90.0))))  # below -60
    assert faint.size == plain.size and np.abs(faint).max() <= 10 ** (-90 / 20) + LSB
    loud, _ = linear16(content(synthesize(server, body(volumeGainDb=16.0))))
    peak = 10 ** (-1 / 20)  # the true-peak ceiling, -1 dBTP
    assert np.abs(plain).max() < np.abs(loud).max() <= peak + LSB


@pytest.mark.parametrize(
    "encoding, rate", [("LINEAR16", 16000), ("LINEAR16", 44100), ("MP3", 8000), ("OGG_OPUS", 48000)]
)
def test_sample_rate_hertz_resamples_the_answer(server, plain, encoding, rate):
    data = content(synthesize(server, body(audioEncoding=encoding, sampleRateHertz=rate)))
    if encoding == "LINEAR16":
        wav, got = linear16(data)
        assert got == rate and wav.size == round(plain.size * rate / RATE)
    else:
        wav = load_audio(data, rate)
        assert abs(wav.size - plain.size * rate / RATE) <= 0.06 * rate  # codec padding


BAD = [
    ({"input": {"text": "hi", "ssml": "<speak>hi</speak>"}}, "input", "exactly one"),
    ({"input": {}}, "input", "exactly one"),
    ({"voice": {"name": "alloy"}}, "voice.languageCode", "Missing required field"),
    ({"voice": {"languageCode": "ja-JP"}}, "voice.languageCode", "English"),
    (
        {"voice": {"languageCode": "en-US", "name": "en-US-Wavenet-D"}},
        "voice.name",
        "unknown voice",
    ),
    ({"audioConfig": {"audioEncoding": "MULAW"}}, "audioConfig.audioEncoding", "LINEAR16, MP3"),
    ({"audioConfig": {}}, "audioConfig.audioEncoding", "Missing required field"),
    ({"audioConfig": {"audioEncoding": "MP3", "pitch": 15}}, "audioConfig.pitch", "-20 to 20"),
    ({"audioConfig": {"audioEncoding": "MP3", "speakingRate": 5}}, "audioConfig.speakingRate", "4"),
    (
        {"audioConfig": {"audioEncoding": "MP3", "volumeGainDb": 20}},
        "audioConfig.volumeGainDb",
        "16",
    ),
    (
        {"audioConfig": {"audioEncoding": "MP3", "sampleRateHertz": 96000}},
        "audioConfig.sampleRateHertz",
        "48000",
    ),
    (
        {"audioConfig": {"audioEncoding": "MP3", "effectsProfileId": ["loud"]}},
        "audioConfig.effectsProfileId",
        "",
    ),
    ({"audioConfig": {"audio_encoding": "MP3"}}, "audioConfig.audio_encoding", "Unknown name"),
    ({"input": {"text": "😀😀"}}, "input.text", "nothing to speak"),
    ({"input": {"text": "   "}}, "input.text", "nothing to speak"),
    ({"input": {"text": "x" * 5001}}, "input.text", "5000"),
]


@pytest.mark.parametrize(
    "change, field, needle", BAD, ids=[b[1] + ":" + str(i) for i, b in enumerate(BAD)]
)
def test_bad_requests_are_400_in_googles_shape(server, change, field, needle):
    err = error(synthesize(server, {**body(), **change}), 400)
    assert err["status"] == "INVALID_ARGUMENT" and needle in err["message"], err
    (info,) = err["details"]
    assert info["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    assert info["domain"] == "chattts" and info["metadata"] == {"field": field}


def test_accepted_but_unused_fields(server, plain):
    payload = body(effectsProfileId=["telephony-class-application"])
    payload["voice"]["ssmlGender"] = 2  # the enum's number, as the proto's JSON allows
    payload["voice"]["languageCode"] = "en"
    wav, _ = linear16(content(synthesize(server, payload)))
    np.testing.assert_array_equal(wav, plain)
    del payload["voice"]["name"]  # the default voice: alloy
    np.testing.assert_array_equal(linear16(content(synthesize(server, payload)))[0], plain)


def test_chinese_language_code_and_a_mix_voice(server):
    payload = body(
        "你好，今天天气很好。", voice={"languageCode": "cmn-Hans-CN", "name": "alloy+nova"}
    )
    wav, _ = linear16(content(synthesize(server, payload)))
    assert wav.size > 0


def test_the_api_key_guards_it_and_google_clients_send_theirs(server, plain):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-Goog-Api-Key": "wrong"}):
        err = error(synthesize(server, body(), headers=headers), 401)
        assert err["status"] == "UNAUTHENTICATED" and "API key" in err["message"]
    wav, _ = linear16(content(synthesize(server, body(), headers={"X-Goog-Api-Key": KEY})))
    np.testing.assert_array_equal(wav, plain)


def test_other_errors_have_googles_shape(server, chat):
    url = f"{server.url}{GOOGLE_PATH}"
    auth = {"Authorization": f"Bearer {KEY}"}
    assert error(httpx.post(url, content=b"{", headers=auth), 415)["status"] == "INVALID_ARGUMENT"
    bad_json = httpx.post(url, content=b"{", headers={**auth, "Content-Type": "application/json"})
    assert "not valid JSON" in error(bad_json, 400)["message"]
    assert error(httpx.get(url, headers=auth), 405)["status"] == "UNIMPLEMENTED"


def test_a_full_queue_is_429_resource_exhausted(server, monkeypatch):
    service = server.server.config.app.state.service

    def full(job):
        raise QueueFullError("256 segments are already waiting")

    monkeypatch.setattr(service.worker, "submit", full)
    r = synthesize(server, body())
    err = error(r, 429)
    assert err["status"] == "RESOURCE_EXHAUSTED" and r.headers["retry-after"] == "1"


def test_a_failure_is_500_internal(server, monkeypatch):
    service = server.server.config.app.state.service

    def broken(*a, **k):
        raise RuntimeError("the disk is on fire")

    monkeypatch.setattr(service, "plan_request", broken)
    err = error(synthesize(server, body()), 500)
    assert err["status"] == "INTERNAL" and "the disk is on fire" in err["message"]


def test_the_openapi_document_describes_it(server):
    auth = {"Authorization": f"Bearer {KEY}"}
    doc = httpx.get(f"{server.url}/openapi.json", headers=auth, timeout=30).json()
    op = doc["paths"][GOOGLE_PATH]["post"]
    schemas = doc["components"]["schemas"]
    assert op["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/SynthesizeSpeechRequest"
    )
    assert set(schemas["SynthesizeSpeechRequest"]["required"]) == {"input", "voice", "audioConfig"}
    assert {"200", "400", "401", "429", "500"} <= set(op["responses"])
    assert op["responses"]["401"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/GoogleError"
    )
    named = schemas["VoiceSelectionParams"]["properties"]["name"]["anyOf"][0]
    assert "alloy" in named["enum"]
    public = httpx.get(f"{server.url}/openapi.json", timeout=30).json()  # without the key
    name = public["components"]["schemas"]["VoiceSelectionParams"]["properties"]["name"]
    assert "enum" not in name["anyOf"][0]


def test_a_server_without_rubber_band_names_the_field(server, monkeypatch):
    monkeypatch.setitem(sys.modules, "pedalboard", None)  # not installed
    for field, value in (("speakingRate", 1.5), ("pitch", 2.0)):
        err = error(synthesize(server, body(**{field: value})), 400)
        (info,) = err["details"]
        assert info["reason"] == "UNSUPPORTED_VALUE" and "chattts[stretch]" in err["message"]
        assert info["metadata"] == {"field": f"audioConfig.{field}"}
