"""The server's bounds on a real socket: voices resolved off the event loop and bounded, voices
made from a recording, slow senders, the connection cap, and the OpenAPI document behind the
API key."""

from __future__ import annotations

import logging
import socket
import threading
import time

import httpx
import numpy as np
import pytest
from _speech import pcm
from conftest import tiny_chat
from test_server import Server

import chattts
from chattts.server import ConnectionLimits, create_app
from chattts.voices import MAX_MIX_TERMS, VoiceLibrary

BODY = {"model": "tts-1", "input": "hi", "response_format": "pcm", "seed": 3, "max_new_token": 4}


@pytest.fixture(scope="module")
def chat() -> chattts.Chat:
    return tiny_chat()


def post(url: str, voice: str, **kw) -> httpx.Response:
    return httpx.post(f"{url}/v1/audio/speech", json={**BODY, "voice": voice}, timeout=120, **kw)


# ---- 1: no request stalls the event loop ------------------------------------------------------


class BlockingDraw:
    """``Chat.sample_random_speaker``, except that seed ``held`` waits until released (a draw
    in progress for as long as the test needs)."""

    held = 987_654_321

    def __init__(self, draw) -> None:
        self.draw, self.entered, self.release = draw, threading.Event(), threading.Event()

    def __call__(self, seed=None):
        if seed == self.held:
            self.entered.set()
            self.release.wait(120)
        return self.draw(seed)


def health_answers(url: str, timeout: float = 0.5, tries: int = 5) -> bool:
    """``/health`` answered 200 within ``timeout`` in one of ``tries`` attempts (a blocked
    event loop never answers while it is blocked)."""
    for _ in range(tries):
        try:
            if httpx.get(f"{url}/health", timeout=timeout).status_code == 200:
                return True
        except httpx.TimeoutException:
            continue
    return False


def test_health_answers_while_a_voice_mix_is_being_resolved(chat, monkeypatch) -> None:
    blocking = BlockingDraw(chat.sample_random_speaker)
    monkeypatch.setattr(chat, "sample_random_speaker", blocking)
    srv = Server(create_app(chat))
    try:
        result: list[httpx.Response] = []
        spec = f"seed_{BlockingDraw.held}+alloy"
        sender = threading.Thread(target=lambda: result.append(post(srv.url, spec)))
        sender.start()
        assert blocking.entered.wait(120), "the mix was never resolved"
        answered = health_answers(srv.url)  # while the draw is held
        blocking.release.set()
        sender.join(120)
        assert answered, "/health did not answer while a voice was being resolved"
        assert result[0].status_code == 200, result[0].text
    finally:
        blocking.release.set()
        srv.stop()


@pytest.fixture(scope="module")
def server(chat):
    srv = Server(create_app(chat))
    yield srv
    srv.stop()


def test_voice_bounds_are_400s(server) -> None:
    for voice, needle in [
        ("+".join(["alloy"] * 1000), "at most 4096 characters"),  # the probe's 6 KB body
        ("+".join(["alloy"] * 299 + ["zed"]), f"at most {MAX_MIX_TERMS} terms"),
    ]:
        r = post(server.url, voice)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == "voice" and needle in r.json()["error"]["message"]
    widest = "+".join(f"seed_{5000 + i}" for i in range(MAX_MIX_TERMS))
    assert post(server.url, widest).status_code == 200


# ---- 6: no mix is a 500 -------------------------------------------------------------------------


@pytest.mark.parametrize("voice", ["alloy*1e308+nova*1e308", "alloy*1.7e308+nova*1.7e308"])
def test_weights_that_would_overflow_mix_as_their_ratio(server, voice) -> None:
    r = post(server.url, voice)
    assert r.status_code == 200, r.text
    np.testing.assert_array_equal(pcm(r.content), pcm(post(server.url, "alloy+nova").content))


# ---- a library voice made from a recording ----------------------------------------------------


def test_a_library_voice_made_from_a_recording_speaks(chat, tmp_path, monkeypatch) -> None:
    params = chattts.InferCodeParams(max_new_token=24, manual_seed=1, show_tqdm=False)
    wav = chat.infer(["hello"], skip_refine_text=True, params_infer_code=params)[0]
    lib = VoiceLibrary(tmp_path / "voices")
    lib.add("dan", sample=chat.sample_audio_speaker(wav), text="hello")
    monkeypatch.setattr(chat, "voices", lib)
    srv = Server(create_app(chat))
    try:
        listed = httpx.get(f"{srv.url}/v1/audio/voices", timeout=60).json()["data"]
        assert {v["id"]: v["kind"] for v in listed}["dan"] == "sample"
        r = post(srv.url, "dan")
        assert r.status_code == 200 and pcm(r.content).size > 0, r.text
        r = post(srv.url, "dan+alloy")
        assert r.status_code == 400 and "'dan' was made from a recording" in r.text
    finally:
        srv.stop()


# ---- 11: slow senders and too many connections ------------------------------------------------


@pytest.fixture(scope="module")
def strict(chat):
    """A server that gives 1 s for a request head and 1 s for a body."""
    limits = ConnectionLimits(header_timeout_s=1.0, body_timeout_s=1.0, max_connections=64)
    srv = Server(create_app(chat), limits)
    yield srv
    srv.stop()


def dribble(port: int, first: bytes, then: bytes, seconds: float = 60.0) -> bytes:
    """Send ``first``, then ``then`` a byte every 0.1 s, until the server closes the connection
    (or ``seconds`` pass); everything the server sent."""
    got = b""
    with socket.create_connection(("127.0.0.1", port), timeout=seconds) as s:
        s.sendall(first)
        s.settimeout(0.1)
        deadline = time.monotonic() + seconds
        i = 0
        while time.monotonic() < deadline:
            try:
                s.send(then[i % len(then) : i % len(then) + 1])
                i += 1
            except OSError:  # the server closed it
                break
            try:
                data = s.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                return got
            got += data
    return got


def test_a_request_head_sent_too_slowly_is_408_and_closed(strict) -> None:
    head = b"POST /v1/audio/speech HTTP/1.1\r\nHost: localhost\r\n"
    got = dribble(strict.port, head, b"X-Slow: aaaaaaaaaaaaaaaaaaaa\r\n")
    assert got.startswith(b"HTTP/1.1 408 ") and b'"request_timeout"' in got, got[:200]


def test_a_request_body_sent_too_slowly_is_408_and_closed(strict, caplog) -> None:
    head = (
        b"POST /v1/audio/speech HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000\r\n\r\n{"
    )
    with caplog.at_level(logging.ERROR, logger="chattts.server"):
        got = dribble(strict.port, head, b" ")
    assert got.startswith(b"HTTP/1.1 408 ") and b"body" in got, got[:200]
    assert "internal error" not in caplog.text


def test_a_silent_connection_is_closed(strict) -> None:
    with socket.create_connection(("127.0.0.1", strict.port), timeout=60) as s:
        assert s.recv(100) == b""  # closed by the server, nothing sent
    assert health_answers(strict.url)  # the server carries on


def test_connections_past_the_cap_get_503(chat) -> None:
    limits = ConnectionLimits(header_timeout_s=60.0, max_connections=4)
    srv = Server(create_app(chat), limits)
    try:
        held = [socket.create_connection(("127.0.0.1", srv.port), timeout=60) for _ in range(4)]
        with socket.create_connection(("127.0.0.1", srv.port), timeout=60) as extra:
            answer = extra.recv(65536)
            assert answer.startswith(b"HTTP/1.1 503 ") and b"too_many_connections" in answer
            assert extra.recv(100) == b""
        for s in held:
            s.close()
        for _ in range(100):  # the held connections are gone once the server saw them close
            if health_answers(srv.url, timeout=5, tries=1):
                break
            time.sleep(0.1)
        assert health_answers(srv.url, timeout=5)
    finally:
        srv.stop()


# ---- 12: the OpenAPI document lists voices only with the key ------------------------------------


def test_the_openapi_document_lists_voices_only_with_the_key(chat) -> None:
    """With an API key, the document (and the /docs page that reads it) is open, but without
    the key it names no voice: only GET /v1/audio/voices, behind the key, lists them."""
    from fastapi.testclient import TestClient

    app = create_app(chat, api_key="k", voices={"private_voice": 5})
    with TestClient(app, base_url="http://localhost") as client:
        anonymous = client.get("/openapi.json")
        assert anonymous.status_code == 200 and "private_voice" not in anonymous.text
        assert "/v1/audio/speech" in anonymous.json()["paths"]
        assert client.get("/docs").status_code == 200
        assert client.get("/v1/audio/voices").status_code == 401
        r = client.get("/openapi.json", headers={"Authorization": "Bearer k"})
        assert r.status_code == 200 and "private_voice" in r.text
        assert client.get("/health").status_code == 200
    with TestClient(create_app(chat), base_url="http://localhost") as client:
        assert client.get("/openapi.json").status_code == 200  # no key: open, as /v1 is
