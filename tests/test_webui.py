"""The web UI in headless Chromium (Debian's ``chromium`` driven by Playwright), tiny model.

Needs ``/usr/bin/chromium`` (``apt-get install chromium``; Playwright never downloads a
browser here) and ``ffmpeg`` for Gradio's streamed audio. A screenshot of the page after a
generation is saved to ``test-artifacts/webui.png``.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import time

import numpy as np
import pytest
from conftest import tiny_chat
from playwright.sync_api import sync_playwright

import chattts
from chattts.audio import load_audio, save_audio
from chattts.captions import parse_captions
from chattts.voices import mix_speakers
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
FIRST_SCREEN = {"width": 1280, "height": 800}


@pytest.fixture(scope="module")
def chat() -> chattts.Chat:
    return tiny_chat()


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
    """A fresh page on the UI at 1280×800; fails the test if it asks for anything off this
    machine."""
    page = browser.new_page(viewport=FIRST_SCREEN)
    outside: list[str] = []
    local = (app.url, "data:", "blob:")
    page.on("request", lambda r: None if r.url.startswith(local) else outside.append(r.url))
    page.goto(app.url, wait_until="networkidle")
    page.wait_for_selector("#generate")
    yield page
    page.close()
    assert outside == [], f"the page reached off the machine: {outside}"


def open_section(page, title: str) -> None:
    page.get_by_text(title, exact=True).click()


def fill(page, selector: str, value: str) -> None:
    """Fill an input until it holds ``value`` (a folded section's inputs are mounted as it
    opens, which may reset what was typed into them first)."""
    deadline = time.monotonic() + WAIT_MS / 1000
    while page.input_value(selector) != value:
        assert time.monotonic() < deadline, f"{selector} does not take {value!r}"
        page.fill(selector, value)
        page.wait_for_timeout(100)


def settings(page, text: str, steps: int, stream: bool = True, refine: bool = False) -> None:
    page.fill("#input-text textarea", text)
    page.set_checked("#refine input", refine)
    open_section(page, "Sampling and length")
    fill(page, "#max-steps input", str(steps))
    page.set_checked("#stream input", stream)


def status(page, pattern: str) -> str:
    """Waits until the status line matches ``pattern``; returns its text."""
    page.wait_for_function(
        "p => new RegExp(p).test(document.querySelector('#status').innerText)",
        arg=pattern,
        timeout=WAIT_MS,
    )
    return page.inner_text("#status")


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
    """Waits for the final audio's playable source; returns its src, duration, file and the
    name it downloads under."""
    audio = poll(
        page,
        "#final-audio audio",
        "as => as.filter(a => a.src && a.readyState >= 2 && a.duration > 0)"
        "  .map(a => ({src: a.src, duration: a.duration}))[0]",
    )
    link = page.locator("#final-audio a[download]")
    audio["file"], audio["name"] = link.get_attribute("href"), link.get_attribute("download")
    return audio


def downloads(page) -> dict[str, str]:
    """The Downloads list: file name -> URL."""
    links = page.locator("#downloads a[download]")
    return {a.get_attribute("download"): a.get_attribute("href") for a in links.all()}


def in_view(page, selector: str) -> bool:
    box = page.locator(selector).bounding_box()
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= FIRST_SCREEN["height"]


def test_first_screen_has_the_text_generate_and_the_main_controls(page):
    for sel in ("#input-text", "#generate", "#interrupt", "#voice", "#tempo", "#lang", "#format"):
        assert in_view(page, sel), f"{sel} is not on the first screen (1280×800)"
    for sel in ("#open-file", "#ssml", "#refine", "#speed", "#refine-prompt", "#status"):
        assert page.locator(sel).is_visible(), sel
    text = page.input_value("#input-text textarea")
    assert text and "[" not in text  # no literal [uv_break] or other token
    # the speaker string, mixing and samples wait folded in the Voice section
    for sel in ("#speaker", "#mix", "#sample-audio", "#loudness", "#pitch", "#max-steps"):
        assert not page.locator(sel).is_visible(), f"{sel} should start folded"
    assert page.locator("#voice input").input_value() == "Default (seed_2)"


def test_generate_gives_audio_captions_and_named_downloads(page, chat, app):
    settings(page, "Hello there. Good morning.", steps=30)
    page.click("#generate")
    done = status(page, "Done")
    assert "hello-there-good-morning.mp3" in done
    audio = final_audio(page)
    assert audio["src"].startswith("blob:") and audio["name"] == "hello-there-good-morning.mp3"
    wav = load_audio(page.request.get(audio["file"]).body(), RATE)
    assert 0 < wav.size <= 2 * 30 * 512
    assert abs(audio["duration"] - wav.size / RATE) < 0.06  # mp3 frames pad a little
    # captions under the player: each sentence with its times, as the .srt and .vtt say
    files = downloads(page)
    assert set(files) == {f"hello-there-good-morning.{s}" for s in ("mp3", "srt", "vtt")}
    cues, _ = parse_captions(page.request.get(files["hello-there-good-morning.srt"]).text(), "srt")
    vtt, _ = parse_captions(page.request.get(files["hello-there-good-morning.vtt"]).text(), "vtt")
    assert [c.text for c in cues] == ["Hello there.", "Good morning."] == [c.text for c in vtt]
    shown = page.inner_text("#captions")
    for cue in cues:
        start = f"{int(cue.start // 60)}:{cue.start % 60:05.2f}"
        assert cue.text in shown and start in shown
    assert cues[-1].end <= wav.size / RATE + 0.06
    # the live player got the audio as it was made (Gradio's HLS stream)
    streamed = poll(
        page,
        "#stream-audio audio",
        "as => as.filter(a => a.src && a.duration > 0).map(a => a.duration)[0]",
    )
    assert streamed > 0
    os.makedirs(ARTIFACTS, exist_ok=True)
    page.screenshot(path=os.path.join(ARTIFACTS, "webui.png"), full_page=True)


def test_empty_text_shows_the_error_in_the_page(page, capfd):
    settings(page, "   ", steps=20)
    page.click("#generate")
    line = status(page, "Error")
    assert "nothing to speak" in line
    assert "nothing to speak" in page.locator(".toast-body").first.inner_text()
    assert "Traceback" not in capfd.readouterr().err  # a user's mistake: no traceback


def test_ssml_error_names_line_and_column(page, capfd):
    page.fill("#input-text textarea", "Hello & goodbye")
    page.check("#ssml input")  # ticking it wraps the text in <speak>, escaped
    page.wait_for_function(
        "() => document.querySelector('#input-text textarea').value.startsWith('<speak>')"
    )
    assert "Hello &amp; goodbye" in page.input_value("#input-text textarea")
    page.fill("#input-text textarea", "<speak>\n  <p>Hello there.\n</speak>")
    page.click("#generate")
    line = status(page, "Error")
    assert re.search(r"line 3, column \d+", line), line
    assert re.search(r"line 3, column \d+", page.locator(".toast-body").first.inner_text())
    assert "Traceback" not in capfd.readouterr().err


def test_interrupt_keeps_what_was_made_and_says_so(page, app):
    ui = app.ui
    runs, interrupted = ui.runs, ui.interrupted
    settings(page, "hello world, a long one", steps=2000)
    page.click("#generate")
    status(page, r"[1-9]\d*\.\d s of audio so far")  # some audio is made
    page.click("#interrupt")
    line = status(page, "Stopped")
    seconds = float(re.search(r"Stopped after (\d+\.\d) s", line).group(1))
    audio = final_audio(page)
    assert abs(audio["duration"] - seconds) < 0.15  # the status rounds; mp3 frames pad
    assert 0 < audio["duration"] < 2000 * 512 / RATE / 2  # far less than the steps asked for
    assert ui.runs == runs + 1 and ui.interrupted == interrupted + 1
    assert "-" not in ui._sessions, "the callbacks did not get the browser session"


def test_voice_section(page, chat, tmp_path):
    def speaker() -> str:
        return page.input_value("#speaker textarea")

    def voice_is(text: str) -> None:
        page.wait_for_function(
            "v => document.querySelector('#voice input').value === v", arg=text, timeout=WAIT_MS
        )

    spk_1111 = chat.sample_random_speaker(1111)
    open_section(page, "Voice: seed, speaker string, mix, sample, save")
    assert speaker() == chat.sample_random_speaker(2)  # the default voice: seed_2
    fill(page, "#audio-seed input", "1234")
    voice_is("seed_1234")
    page.wait_for_function(
        "s => document.querySelector('#speaker textarea').value === s",
        arg=chat.sample_random_speaker(1234),
        timeout=WAIT_MS,
    )
    # the mix's defaults are two mixable voices: pressing Mix works at once
    page.click("#mix")
    voice_is("seed_2*0.5+seed_1111*0.5")
    mixed = mix_speakers([(chat.sample_random_speaker(2), 0.5), (spk_1111, 0.5)])
    page.wait_for_function(
        "s => document.querySelector('#speaker textarea').value === s", arg=mixed, timeout=WAIT_MS
    )
    # a sample recording gives its speaker sample code and makes the Custom voice speak
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
    voice_is("Custom: the speaker string or sample of the Voice section")
    assert np.isfinite(wav).all()


def test_text_file_opens_into_the_text_box(page, tmp_path):
    path = tmp_path / "notes.md"
    path.write_text("# Notes\n\nSome *important* words, [a link](https://example.org).\n")
    with page.expect_file_chooser() as chooser:
        page.click("#open-file")
    chooser.value.set_files(str(path))
    page.wait_for_function(
        "() => document.querySelector('#input-text textarea').value.startsWith('Notes')",
        timeout=WAIT_MS,
    )
    assert page.input_value("#input-text textarea") == "Notes\n\nSome important words, a link."
    assert "notes.md" in status(page, "Opened")
