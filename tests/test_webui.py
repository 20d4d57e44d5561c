"""The web UI in headless Chromium (Debian's ``chromium`` driven by Playwright), tiny model.

Needs ``/usr/bin/chromium`` (``apt-get install chromium``; Playwright never downloads a
browser here) and ``ffmpeg`` for Gradio's streamed audio. A screenshot of the page after a
generation is saved to ``test-artifacts/webui.png``.
"""

from __future__ import annotations

import os
import shutil
import socket
import time

import numpy as np
import pytest
from playwright.sync_api import sync_playwright

import chattts
from chattts.audio import load_audio, save_audio
from chattts.webui import create_ui, launch

CHROMIUM = os.environ.get("CHATTTS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "test-artifacts"
)
RATE = 24000
WAIT_MS = 120_000  # generous: two shared cores


@pytest.fixture(scope="module")
def chat(tiny_root) -> chattts.Chat:
    c = chattts.Chat()
    c.load(source="custom", custom_path=tiny_root, verify=False, device="cpu", raise_on_error=True)
    return c


@pytest.fixture(scope="module")
def app(chat):
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: apt-get install chromium"
    assert shutil.which("ffmpeg"), "ffmpeg is missing: apt-get install ffmpeg"
    demo = create_ui(chat)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launch(demo, host="127.0.0.1", port=port, block=False)
    demo.url = f"http://127.0.0.1:{port}"
    yield demo
    demo.close()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture()
def page(app, browser):
    """A fresh page on the UI; fails the test if it asks for anything off this machine."""
    page = browser.new_page(viewport={"width": 1280, "height": 1500})
    outside: list[str] = []
    local = (app.url, "data:", "blob:")
    page.on("request", lambda r: None if r.url.startswith(local) else outside.append(r.url))
    page.goto(app.url, wait_until="networkidle")
    page.wait_for_selector("#generate")
    yield page
    page.close()
    assert outside == [], f"the page reached off the machine: {outside}"


def settings(page, text: str, steps: int, stream: bool = True) -> None:
    page.fill("#input-text textarea", text)
    page.uncheck("#refine input")
    page.fill("#max-steps input", str(steps))
    page.set_checked("#stream input", stream)


def poll(page, selector: str, script: str, arg=None, timeout_ms: int = WAIT_MS):
    """Evaluate ``script`` over the elements matching ``selector`` (Playwright selectors see
    into shadow roots, as Gradio's waveform player needs) until it returns something."""
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        value = page.locator(selector).evaluate_all(script, arg)
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting on {selector}"
        page.wait_for_timeout(100)


def final_audio(page) -> dict:
    """Waits for the final audio's playable source; returns its src, duration and file."""
    audio = poll(
        page,
        "#final-audio audio",
        "as => as.filter(a => a.src && a.readyState >= 2 && a.duration > 0)"
        "  .map(a => ({src: a.src, duration: a.duration}))[0]",
    )
    audio["file"] = page.locator("#final-audio a[download]").get_attribute("href")
    return audio


def test_loads_with_every_control(page):
    for sel in (
        "#input-text",
        "#refine",
        "#voice",
        "#audio-seed",
        "#audio-dice",
        "#text-seed",
        "#text-dice",
        "#speaker",
        "#sample-audio",
        "#stream",
        "#generate",
        "#interrupt",
        "#stream-audio",
        "#final-audio",
    ):
        assert page.locator(sel).count() == 1, sel
    for label in ("Temperature", "top_P", "top_K"):
        assert page.get_by_label(label).count() >= 1, label


def test_generate_streams_then_gives_playable_audio(page, chat, app):
    settings(page, "hello world", steps=40)
    page.click("#generate")
    audio = final_audio(page)
    assert audio["src"].startswith("blob:")
    # the same audio as the file behind it, and it plays
    data = page.request.get(audio["file"]).body()
    wav = load_audio(data, RATE)
    assert 0 < wav.size <= 40 * 512
    assert abs(audio["duration"] - wav.size / RATE) < 0.05
    played = page.locator("#final-audio audio").evaluate_all(
        """async (as) => {
            const a = as.find(x => x.src);
            a.muted = true;
            await a.play();
            await new Promise(r => setTimeout(r, 300));
            const t = a.currentTime;
            a.pause();
            return t;
        }"""
    )
    assert played > 0
    # the streamed player got the audio as it was produced (Gradio's HLS stream)
    streamed = poll(
        page,
        "#stream-audio audio",
        "as => as.filter(a => a.src && a.duration > 0).map(a => a.duration)[0]",
    )
    assert streamed > 0
    os.makedirs(ARTIFACTS, exist_ok=True)
    page.screenshot(path=os.path.join(ARTIFACTS, "webui.png"), full_page=True)


def test_interrupt_stops_the_generation(page, app):
    ui = app.ui
    runs, interrupted = ui.runs, ui.interrupted
    settings(page, "hello world, a long one", steps=2000, stream=False)
    page.click("#generate")
    # the code pass is running once the spoken text shows
    page.wait_for_function(
        "() => document.querySelector('#refined textarea, #refined input').value.length > 0",
        timeout=WAIT_MS,
    )
    time.sleep(0.5)
    page.click("#interrupt")
    audio = final_audio(page)
    assert ui.runs == runs + 1 and ui.interrupted == interrupted + 1
    assert "-" not in ui._sessions, "the callbacks did not get the browser session"
    assert audio["duration"] < 2000 * 512 / RATE / 2  # far less than the steps asked for


def test_voice_controls(page, chat, tmp_path):
    def speaker() -> str:
        return page.input_value("#speaker textarea")

    assert speaker() == chat.sample_random_speaker(2)  # the default voice: seed 2
    page.fill("#audio-seed input", "1234")
    page.press("#audio-seed input", "Enter")
    page.wait_for_function(
        "s => document.querySelector('#speaker textarea').value === s",
        arg=chat.sample_random_speaker(1234),
        timeout=WAIT_MS,
    )
    page.click("#audio-dice")
    page.wait_for_function(
        "() => document.querySelector('#audio-seed input').value !== '1234'", timeout=WAIT_MS
    )
    seed = int(page.input_value("#audio-seed input"))
    page.wait_for_function(
        "s => document.querySelector('#speaker textarea').value === s",
        arg=chat.sample_random_speaker(seed),
        timeout=WAIT_MS,
    )
    # a sample recording gives its speaker sample code
    spk = chat.sample_random_speaker(7)
    params = chattts.InferCodeParams(
        spk_emb=spk, manual_seed=1, min_new_token=30, max_new_token=40, show_tqdm=False
    )
    wav = next(chat.synthesize(["hello"], [params]))[0]
    path = tmp_path / "sample.wav"
    save_audio(str(path), wav, RATE)
    page.set_input_files("#sample-audio input[type=file]", str(path))
    expected = chat.sample_audio_speaker(load_audio(str(path), RATE))
    code = poll(page, "#sample-code textarea", "ts => ts.map(t => t.value).find(v => v)")
    assert code == expected
    assert np.isfinite(wav).all()
