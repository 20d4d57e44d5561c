"""The server from a browser's side, on a real socket: API docs served from the installation
(no CDN), CORS preflights for a web front end on another origin, and FLAC answers whose header
holds the duration."""

from __future__ import annotations

import re

import httpx
import numpy as np
import pytest
from conftest import tiny_chat
from test_server import Server

import chattts
from chattts.audio import load_audio
from chattts.errors import UsageError
from chattts.server import create_app
from chattts.server.browser import ASSETS_PATH, assets_dir

ORIGIN = "http://localhost:3000"
API_KEY = "s3cret"


@pytest.fixture(scope="module")
def chat() -> chattts.Chat:
    return tiny_chat()


@pytest.fixture(scope="module")
def server(chat):
    srv = Server(create_app(chat, api_key=API_KEY, cors_origins=[ORIGIN, "http://127.0.0.1:5173"]))
    yield srv
    srv.stop()


def speech(server, fmt: str, **extra) -> httpx.Response:
    body = {"model": "tts-1", "voice": "alloy", "input": "hello world", "response_format": fmt}
    body.update(seed=2, max_new_token=20, **extra)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    return httpx.post(f"{server.url}/v1/audio/speech", json=body, headers=headers, timeout=120)


# ---- the documentation pages, offline ----------------------------------------------------


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_every_file_from_the_server(server, page):
    r = httpx.get(server.url + page, timeout=30)
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    refs = re.findall(r"""(?:src|href)\s*=\s*['"]([^'"]+)['"]""", r.text)
    refs += re.findall(r"""url:\s*['"]([^'"]+)['"]""", r.text)
    assert refs, r.text
    assert not re.search(r"https?://", r.text), "the page names another host"
    for ref in refs:
        got = httpx.get(server.url + ref, timeout=30)
        assert got.status_code == 200, ref
        assert len(got.content) > 1000, ref
    scripts = [ref for ref in refs if ref.endswith(".js")]
    assert scripts and all(s.startswith(ASSETS_PATH + "/") for s in scripts)


def test_docs_assets_are_the_installed_packages_files(server):
    folder = assets_dir()
    assert folder is not None and "fastapi_offline" in folder
    for name in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
        with open(f"{folder}/{name}", "rb") as f:
            served = httpx.get(f"{server.url}{ASSETS_PATH}/{name}", timeout=30)
            assert served.status_code == 200 and served.content == f.read()


# ---- CORS ------------------------------------------------------------------------------


def test_cors_preflight_is_answered_without_the_api_key(server):
    r = httpx.options(
        f"{server.url}/v1/audio/speech",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in r.headers["access-control-allow-methods"]
    allowed = r.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed


def test_cors_answers_carry_the_origin_errors_too(server):
    r = speech(server, "pcm")
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers  # no Origin
    body = {"model": "tts-1", "voice": "alloy", "input": "hi", "max_new_token": 8}
    headers = {"Origin": ORIGIN, "Authorization": f"Bearer {API_KEY}"}
    ok = httpx.post(f"{server.url}/v1/audio/speech", json=body, headers=headers, timeout=120)
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == ORIGIN
    denied = httpx.post(f"{server.url}/v1/audio/speech", json=body, headers={"Origin": ORIGIN})
    assert denied.status_code == 401  # the page can read why
    assert denied.headers["access-control-allow-origin"] == ORIGIN


def test_cors_other_origins_are_refused(server):
    r = httpx.options(
        f"{server.url}/v1/audio/speech",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
        timeout=30,
    )
    assert r.status_code == 400
    assert "access-control-allow-origin" not in r.headers


def test_cors_is_off_by_default(chat):
    srv = Server(create_app(chat))
    try:
        r = httpx.options(
            f"{srv.url}/v1/audio/speech",
            headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
            timeout=30,
        )
        assert r.status_code == 405 and "access-control-allow-origin" not in r.headers
    finally:
        srv.stop()


@pytest.mark.parametrize("origin", ["http://localhost:3000/", "localhost:3000", "ftp://x", ""])
def test_malformed_origins_are_refused_before_the_model_loads(origin):
    with pytest.raises(UsageError, match="--cors-origin"):
        create_app(model_dir="/nonexistent", cors_origins=[origin])


def test_cli_option_is_repeatable():
    from chattts.cli.args import server_options
    from chattts.cli.main import build_parser

    args = build_parser().parse_args(
        ["serve", "--cors-origin", ORIGIN, "--cors-origin", "https://app.example.com:8443"]
    )
    assert server_options(args).cors_origins == (ORIGIN, "https://app.example.com:8443")
    assert server_options(build_parser().parse_args(["serve"])).cors_origins == ()


# ---- FLAC ------------------------------------------------------------------------------


def flac_total_samples(data: bytes) -> int:
    """The STREAMINFO block's total samples (36 bits; 0 = unknown)."""
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO comes first
    info = data[8 : 8 + 34]
    return int.from_bytes(info[13:18], "big") & ((1 << 36) - 1)


def test_flac_answer_has_its_duration(server):
    r = speech(server, "flac")
    assert r.status_code == 200 and r.headers["content-type"] == "audio/flac"
    assert int(r.headers["content-length"]) == len(r.content)
    wav = load_audio(r.content, 24000)
    assert wav.size > 0
    assert flac_total_samples(r.content) == wav.size
    pcm = speech(server, "pcm").content  # the same request's samples
    same = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768.0
    assert same.size == wav.size and np.abs(same - wav).max() < 1e-3


def test_flac_in_sse_is_still_streamed(server):
    r = speech(server, "flac", stream_format="sse")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert '"speech.audio.done"' in r.text
