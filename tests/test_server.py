"""The OpenAI-compatible server, through the official ``openai`` package, against uvicorn on
127.0.0.1 with the tiny model: formats, streaming, SSE, errors, batching, disconnects."""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import json
import os
import socket
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import openai
import pytest
import uvicorn
from _speech import RATE, assert_same_audio, decode, pcm
from conftest import tiny_chat

import chattts
from chattts.audio import load_audio
from chattts.errors import UsageError
from chattts.server import OPENAI_VOICES, create_app, uvicorn_settings

STEPS = 20  # code steps per request: short audio, fast tests


class Server:
    """uvicorn serving an app on a free loopback port, in a thread (with the settings of
    ``chattts serve``, and its connection ``limits``)."""

    def __init__(self, app, limits=None) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        settings = {**uvicorn_settings(limits), "log_level": "warning"}  # chattts serve's
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, **settings)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            assert self.thread.is_alive(), "uvicorn stopped"
            time.sleep(0.02)

    def health(self) -> dict:
        return httpx.get(f"{self.url}/health", timeout=30).json()["worker"]

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture(scope="module")
def chat() -> chattts.Chat:
    """The server's own Chat (its worker thread uses it)."""
    return tiny_chat()


@pytest.fixture(scope="module")
def server(chat):
    app = create_app(chat, max_batch=8, max_new_token=2048)
    srv = Server(app)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=300)


def speak(client, text="hello world", voice="alloy", seed=1, fmt="pcm", stream=False, **extra):
    """The response bytes of one request (read whole, or streamed chunk by chunk)."""
    body = {"seed": seed, "max_new_token": STEPS, **extra}
    args = dict(model="tts-1", input=text, voice=voice, response_format=fmt, extra_body=body)
    if not stream:
        return client.audio.speech.create(**args).content
    with client.audio.speech.with_streaming_response.create(**args) as r:
        assert r.status_code == 200
        return b"".join(r.iter_bytes())


@pytest.mark.parametrize("speed", [0.5, 1.5, 2.0])
def test_speed_is_exact_tempo(client, speed):
    """OpenAI's speed: the answer lasts the speed-1 answer's duration / speed (±3 %)."""
    plain = pcm(speak(client, "chat speech model test", seed=6, max_new_token=40))
    fast = pcm(speak(client, "chat speech model test", seed=6, max_new_token=40, speed=speed))
    assert fast.size == pytest.approx(plain.size / speed, rel=0.03)


def test_main_reads_the_server_options_once(monkeypatch, tiny_root):
    """``main`` on a Namespace made by hand: the missing options get the parser's defaults."""
    import chattts.server as server_module

    seen = {}
    monkeypatch.setattr(server_module, "create_app", lambda **kw: seen.update(kw) or "app")
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(run=kw))
    args = argparse.Namespace(model_dir=tiny_root, verify=False, max_batch=3, port=9)
    assert server_module.main(args) == 0
    settings = seen["settings"]
    assert (settings.max_batch, settings.max_queue, settings.voices) == (3, 256, None)
    assert settings.scheduling == "continuous"
    assert seen["allowed_hosts"] == ["127.0.0.1"]
    assert (seen["run"]["host"], seen["run"]["port"]) == ("127.0.0.1", 9)
    with pytest.raises(UsageError, match="--max-batch must be at least 1"):
        server_module.main(argparse.Namespace(model_dir=tiny_root, max_batch=0))


def test_models_voices_health(client, server):
    ids = [m.id for m in client.models.list()]
    assert "chattts" in ids and "tts-1" in ids
    assert client.models.retrieve("chattts").id == "chattts"
    voices = httpx.get(f"{server.url}/v1/audio/voices").json()
    assert voices["object"] == "list"
    names = {v["id"]: v for v in voices["data"]}
    assert names["alloy"]["seed"] == OPENAI_VOICES["alloy"]
    health = httpx.get(f"{server.url}/health").json()
    assert health["status"] == "ok" and {"batches", "rows", "running"} <= set(health["worker"])
    assert "chattts_server_batches" in httpx.get(f"{server.url}/metrics").text


def test_pcm_is_the_library_output(client, chat):
    """Voice, ChatTTS's speed prompt, seed and max_new_token reach the model as documented:
    the answer is Chat.speak's audio."""
    data = speak(client, "chat speech model", voice="nova", seed=5, chattts_speed=7)
    spk = chat.sample_random_speaker(OPENAI_VOICES["nova"])
    expected = chat.speak(
        "chat speech model", voice=spk, seed=5, speed=7, max_new_token=STEPS, captions=False
    ).audio
    assert expected.size > 0
    assert_same_audio(pcm(data), expected, "pcm vs Chat.speak")
    plain = pcm(speak(client, "chat speech model", voice="nova", seed=5))
    assert not np.array_equal(pcm(data), plain)  # the [speed_7] prompt changed the codes


@pytest.fixture(scope="module")
def reference(client) -> np.ndarray:
    """The audio of the request the format tests make, as raw PCM."""
    return pcm(speak(client, "hello world", seed=11, fmt="pcm"))


# decoded length - true length: codec priming and frame padding (see chattts.audio)
EXTRA = {
    "pcm": (0, 0),
    "wav": (0, 0),
    "flac": (0, 0),
    "opus": (0, 960),
    "mp3": (0, 1152 + 1152 + 1105),
    "aac": (1024, 1024 + 1024),
}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
def test_every_format(client, reference, fmt, stream):
    data = speak(client, "hello world", seed=11, fmt=fmt, stream=stream)
    wav = decode(data, fmt)
    lo, hi = EXTRA[fmt]
    n = reference.size
    assert n + lo <= wav.size <= n + hi, f"{fmt}: {wav.size} samples for {n}"
    if fmt in ("wav", "flac", "pcm"):  # lossless: the same samples
        assert_same_audio(wav, reference, fmt)
    else:  # lossy: the same loudness, roughly
        ratio = float(np.sqrt(np.mean(wav**2)) / np.sqrt(np.mean(reference**2)))
        assert 0.5 < ratio < 2.0, f"{fmt}: RMS ratio {ratio}"


def test_sse_events(client, reference):
    args = dict(model="chattts", input="hello world", voice="alloy", response_format="pcm")
    body = {"seed": 11, "max_new_token": STEPS}
    with client.audio.speech.with_streaming_response.create(
        **args, stream_format="sse", extra_body=body
    ) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    events = [json.loads(line.removeprefix("data: ")) for line in lines]
    assert all(line.startswith("data: ") for line in lines)
    deltas = [e for e in events if e["type"] == "speech.audio.delta"]
    assert len(deltas) >= 1 and events[-1]["type"] == "speech.audio.done"
    assert [e["type"] for e in events[:-1]] == ["speech.audio.delta"] * (len(events) - 1)
    audio = b"".join(base64.b64decode(e["audio"]) for e in deltas)
    assert_same_audio(pcm(audio), reference, "sse")
    usage = events[-1]["usage"]
    assert usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_sse_mp3_decodes(client, reference):
    r = httpx.post(
        f"{client.base_url}audio/speech",
        json={
            "model": "chattts",
            "input": "hello world",
            "voice": "alloy",
            "seed": 11,
            "max_new_token": STEPS,
            "stream_format": "sse",
        },
        timeout=300,
    )
    assert r.status_code == 200
    events = [json.loads(x[6:]) for x in r.text.split("\n\n") if x.startswith("data: ")]
    data = b"".join(base64.b64decode(e["audio"]) for e in events if "audio" in e)
    assert load_audio(data, RATE).size >= reference.size


def test_voice_forms(client, chat):
    """A named voice, seed_N, a speaker string and a voice object give the same speaker."""
    seed_voice = speak(client, voice=f"seed_{OPENAI_VOICES['echo']}", seed=2)
    spk = chat.sample_random_speaker(OPENAI_VOICES["echo"])
    assert speak(client, voice="echo", seed=2) == seed_voice
    assert speak(client, voice=spk, seed=2) == seed_voice
    assert speak(client, voice={"id": "echo"}, seed=2) == seed_voice
    assert speak(client, voice="onyx", seed=2) != seed_voice


def test_refine(client):
    plain = speak(client, "hello world", seed=4)
    refined = speak(client, "hello world", seed=4, refine=True)
    assert len(refined) > 0 and refined != plain  # the code pass read the refined text


def error_of(exc) -> dict:
    body = exc.body if isinstance(exc.body, dict) else json.loads(exc.response.text)
    err = body.get("error", body)
    assert set(err) == {"message", "type", "param", "code"}, err
    return err


BAD = [
    ({"input": ""}, 400, "input"),
    ({"input": "   "}, 400, "input"),
    ({"input": "a" * 4097}, 400, "input"),
    ({"voice": "nobody"}, 400, "voice"),
    ({"voice": "x" * 40}, 400, "voice"),  # looks like a speaker string, is not one
    ({"voice": 7}, 400, "voice"),
    ({"response_format": "ogg"}, 400, "response_format"),
    ({"speed": 4.5}, 400, "speed"),
    ({"speed": 0.1}, 400, "speed"),
    ({"speed": "fast"}, 400, "speed"),
    ({"stream_format": "chunks"}, 400, "stream_format"),
    ({"model": "whisper-1"}, 404, "model"),
    ({"seed": -1}, 400, "seed"),
    ({"seed": True}, 400, "seed"),
    ({"seed": "5"}, 400, "seed"),
    ({"temperature": 0}, 400, "temperature"),
    ({"top_p": 1.5}, 400, "top_p"),
    ({"top_k": 0}, 400, "top_k"),
    ({"max_new_token": 0}, 400, "max_new_token"),
    ({"max_new_token": 100000}, 400, "max_new_token"),
    ({"refine": "maybe"}, 400, "refine"),
    ({"colour": "blue"}, 400, "colour"),
]


@pytest.mark.parametrize(("change", "status", "param"), BAD, ids=[b[2] for b in BAD])
def test_bad_requests(client, change, status, param):
    body = {"model": "chattts", "input": "hello", "voice": "alloy", **change}
    with pytest.raises(openai.APIStatusError) as e:
        client.post("/audio/speech", body=body, cast_to=bytes)
    assert e.value.status_code == status
    err = error_of(e.value)
    assert err["param"] == param and err["type"] == "invalid_request_error" and err["message"]


def test_missing_fields_and_bad_json(server):
    url = f"{server.url}/v1/audio/speech"
    for content in (b"", b"{not json", b"[1, 2]", json.dumps({"input": "hi"}).encode()):
        r = httpx.post(url, content=content, headers={"content-type": "application/json"})
        assert r.status_code == 400, content
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    r = httpx.post(url, content=b"x" * (2 << 20))
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
    r = httpx.get(url)
    assert r.status_code == 405 and "error" in r.json()
    r = httpx.get(f"{server.url}/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_header_limits(server):
    """Headers past the app's limit are a 431; far past it, uvicorn's h11 parser refuses the
    request head before reading it all (the settings of chattts serve)."""
    url = f"{server.url}/v1/models"
    r = httpx.get(url, headers={"x-pad": "a" * (40 << 10)})
    assert r.status_code == 431 and r.json()["error"]["code"] == "headers_too_large"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: localhost\r\nx-pad: " + b"a" * (1 << 20))
        head = s.recv(4096)
    assert head.startswith(b"HTTP/1.1 4"), head[:80]
    assert httpx.get(url).status_code == 200  # the server is unharmed


def test_api_key(chat):
    srv = Server(create_app(chat, api_key="s3cret", max_new_token=STEPS))
    try:
        bad = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as e:
            bad.models.list()
        assert error_of(e.value)["code"] == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            speak(bad)
        assert httpx.get(f"{srv.url}/v1/models").status_code == 401
        good = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="s3cret", max_retries=0)
        assert len(speak(good)) > 0
        assert httpx.get(f"{srv.url}/health").status_code == 200  # probes need no key
    finally:
        srv.stop()


def test_32_concurrent_requests_are_batched_and_not_mixed_up(client, server):
    """All answer 200; each equals the same request made alone; some ran batched."""
    words = ["hello", "world", "chat", "speech", "model", "test", "voice", "sound"]
    reqs = [
        (f"{words[i % 8]} {words[(i * 3 + 1) % 8]} {words[(i * 5 + 2) % 8]}", f"seed_{i % 5}", i)
        for i in range(32)
    ]
    before = server.health()

    def one(req):
        text, voice, seed = req
        return speak(client, text, voice=voice, seed=100 + seed)

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        together = list(pool.map(one, reqs))  # raises unless every request answered 200
    after = server.health()
    assert after["rows"] >= before["rows"] + 32, after
    assert after["largest_batch"] > 1
    for req, got in zip(reqs, together, strict=True):
        alone = one(req)
        assert_same_audio(pcm(got), pcm(alone), f"request {req}")


def test_disconnect_mid_stream_frees_the_worker_within_one_step(client, server):
    before = server.health()
    args = dict(model="chattts", input="hello world", voice="alloy", response_format="pcm")
    with client.audio.speech.with_streaming_response.create(
        **args, extra_body={"seed": 3, "max_new_token": 2000}
    ) as r:
        first = next(r.iter_bytes())
        assert len(first) > 0  # audio arrived while 2000 steps were still to run
    # leaving the block closed the connection: the worker must drop the request
    deadline = time.monotonic() + 120
    while True:
        h = server.health()
        if h["cancelled"] > before["cancelled"] and not h["busy"]:
            break
        assert time.monotonic() < deadline, f"the worker did not drop the request: {h}"
        time.sleep(0.05)
    assert h["last_cancel_steps"] <= 1, h  # generation steps run after the cancel
    assert h["steps"] - before["steps"] < 1000, h  # far fewer than the 2000 asked for
    assert h["audio_seconds"] == before["audio_seconds"]  # not counted as completed
    assert len(speak(client)) > 0  # and the worker serves the next request


def stream_first_chunk(client, text: str, seed: int, steps: int = 2000):
    """Open a streamed request; returns (its response context, its chunk iterator, the first
    chunk). Keep the iterator: dropping it closes the connection."""
    args = dict(model="chattts", input=text, voice="alloy", response_format="pcm")
    ctx = client.audio.speech.with_streaming_response.create(
        **args, extra_body={"seed": seed, "max_new_token": steps}
    )
    chunks = ctx.__enter__().iter_bytes()
    return ctx, chunks, next(chunks)


def test_a_request_that_leaves_does_not_disturb_the_others(client, server):
    """Three requests generate together; one client leaves; its rows leave at the next step,
    and the two others get their whole audio, equal to each made alone."""
    before = server.health()
    stays = [("chat speech model", "seed_3", 21), ("hello again world", "seed_4", 22)]
    got: dict = {}

    def staying(i: int) -> None:
        text, voice, seed = stays[i]
        got[i] = speak(client, text, voice=voice, seed=seed, max_new_token=60)

    leaving, leaving_chunks, got["left"] = stream_first_chunk(client, "hello world", seed=3)
    threads = [threading.Thread(target=staying, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    while server.health()["running"] < 3 and any(t.is_alive() for t in threads):
        assert time.monotonic() < deadline, f"the requests did not join: {server.health()}"
        time.sleep(0.01)
    leaving.__exit__(None, None, None)
    del leaving_chunks
    for t in threads:
        t.join(300)
    after = server.health()
    assert len(got["left"]) > 0
    assert after["cancelled"] == before["cancelled"] + 1
    assert after["largest_batch"] >= 3, "the three requests generated together"
    for i, (text, voice, seed) in enumerate(stays):
        alone = speak(client, text, voice=voice, seed=seed, max_new_token=60)
        assert_same_audio(pcm(got[i]), pcm(alone), f"the request that stayed ({text})")


# ---- the examples that go with the server (examples/api) and the notebook -------------------

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize(("fmt", "mode"), [("mp3", "--stream"), ("pcm", "--sse"), ("wav", None)])
def test_example_client(server, reference, tmp_path, fmt, mode):
    out = tmp_path / f"out.{fmt}"
    cmd = [
        sys.executable,
        os.path.join(ROOT, "examples", "api", "client.py"),
        "hello world",
        "-o",
        str(out),
        "--format",
        fmt,
        "--base-url",
        f"{server.url}/v1",
        "--seed",
        "11",
        "--max-new-token",
        str(STEPS),
    ]
    proc = subprocess.run(
        cmd + ([mode] if mode else []), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    data = out.read_bytes()
    wav = decode(data, fmt)
    lo, hi = EXTRA[fmt]
    assert reference.size + lo <= wav.size <= reference.size + hi
    if mode == "--sse":
        assert "usage:" in proc.stderr


def test_example_notebook_runs_top_to_bottom(tiny_root, tmp_path, monkeypatch):
    """examples/ipynb/example.ipynb, every code cell in order, on the tiny model."""
    with open(os.path.join(ROOT, "examples", "ipynb", "example.ipynb"), encoding="utf-8") as f:
        notebook = json.load(f)
    monkeypatch.setenv("CHATTTS_MODEL_DIR", tiny_root)
    monkeypatch.setenv("CHATTTS_NO_VERIFY", "1")
    monkeypatch.setenv("CHATTTS_MAX_NEW_TOKEN", "24")
    monkeypatch.setenv("CHATTTS_OUT", str(tmp_path))
    cells = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    assert len(cells) >= 6
    scope: dict = {"__name__": "__main__"}
    for i, cell in enumerate(cells):
        exec(compile("".join(cell["source"]), f"example.ipynb cell {i}", "exec"), scope)
    for name in ("notebook_0.wav", "notebook_stream.wav", "notebook_clone.wav"):
        assert load_audio(str(tmp_path / name), RATE).size > 0, name


def test_keep_alive_survives_a_500(server, monkeypatch):
    """An unexpected exception is a 500 naming its cause, and the connection stays open."""
    service = server.server.config.app.state.service

    def broken(*args, **kwargs):
        raise RuntimeError("broken on purpose")

    body = {"model": "tts-1", "input": "hi", "voice": "alloy", "max_new_token": 4}
    with httpx.Client(base_url=server.url, timeout=60) as http:

        def port(r):
            return r.extensions["network_stream"].get_extra_info("socket").getsockname()[1]

        first = http.get("/v1/models")
        monkeypatch.setattr(service, "plan", broken)
        r = http.post("/v1/audio/speech", json=body)
        assert r.status_code == 500 and "broken on purpose" in r.json()["error"]["message"]
        assert r.json()["error"]["type"] == "server_error"
        monkeypatch.undo()
        after = http.post("/v1/audio/speech", json=body)
        assert after.status_code == 200 and port(after) == port(first) == port(r)
