"""The web UI's callbacks without a browser (tiny model): the controls' mapping onto
``Chat.speak``, the files and captions, finishing, interrupts, errors and warnings shown in the
page, the Voice section, text files and SSML."""

from __future__ import annotations

import logging
import os
from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest

from chattts.audio import dsp, load_audio, save_audio
from chattts.captions import read_captions
from chattts.errors import InputTypeError, ParameterError
from chattts.generation.engine import Interrupt
from chattts.params import InferCodeParams
from chattts.voices import VoiceLibrary, mix_speakers
from chattts.webui.callbacks import WebUI
from chattts.webui.generate import FORMATS, Settings, write_files
from chattts.webui.text import (
    MAX_NAME_CHARS,
    MAX_TEXT_CHARS,
    MAX_TEXT_FILE_BYTES,
    as_ssml,
    caption_rows,
    clock,
    file_stem,
)
from chattts.webui.voices import CUSTOM, DEFAULT_VOICE, mix_spec

RATE = 24000
#: What the tests' generations share: short (a few code steps per sentence), no refine pass.
QUICK = {"refine": False, "max_steps": 30}


@pytest.fixture()
def ui(chat, tmp_path) -> WebUI:
    return WebUI(chat, library=VoiceLibrary(str(tmp_path / "voices")))


def run(ui: WebUI, request=None, progress=None, **settings) -> list[dict]:
    return list(ui.generate(Settings(**{**QUICK, **settings}), request, progress))


def speak_options(**overrides) -> dict:
    """What the page's defaults mean for ``Chat.speak`` (with :data:`QUICK`)."""
    return {
        "voice": DEFAULT_VOICE, "seed": 42, "temperature": 0.3, "top_p": 0.7, "top_k": 20,
        "max_new_token": 30, "speed": 5, "refine": False, "tempo": 1.0, "pitch": 0.0,
        "gain": 0.0, "loudness": None, **overrides,
    }  # fmt: skip


# ---- the controls -----------------------------------------------------------------------------


def test_settings_map_onto_speak_options():
    s = Settings(
        ssml=True, tempo=1.25, speed=3, lang="zh", refine_prompt=" [oral_2] ", seed=7.0,
        max_steps=100.0, pitch=-2, gain=3, loudness_on=False, loudness=-20,
    )  # fmt: skip
    assert s.options() == {
        "ssml": True, "seed": 7, "temperature": 0.3, "top_p": 0.7, "top_k": 20,
        "max_new_token": 100, "speed": 3, "refine": True, "refine_prompt": "[oral_2]",
        "lang": "zh", "tempo": 1.25, "pitch": -2.0, "gain": 3.0, "loudness": None,
    }  # fmt: skip
    on = Settings(loudness_on=True, loudness=-20, lang="auto", seed=None, refine_prompt="")
    assert on.options()["loudness"] == -20.0
    assert on.options()["lang"] is None and on.options()["seed"] is None
    assert on.options()["refine_prompt"] is None


@pytest.mark.parametrize(
    "field, value, words",
    [("format", "aiff", "unknown format"), ("lang", "fr", "unknown language"),
     ("seed", 1.5, "whole number"), ("max_steps", True, "whole number")],
)  # fmt: skip
def test_bad_settings_are_refused(field, value, words):
    with pytest.raises(ParameterError, match=words):
        Settings(**{field: value}).options()


def test_the_page_speaks_as_chat_speak_does(ui, chat):
    text = "Hello there. Good morning."
    last = run(ui, text=text, stream=False, format="wav")[-1]
    speech = last["speech"]
    expected = chat.speak(text, **speak_options())
    np.testing.assert_array_equal(speech.audio, expected.audio)
    assert speech.segments == expected.segments
    assert {s.voice for s in speech.segments} == {DEFAULT_VOICE}
    assert (
        last["status"].startswith("**Done**") and "hello-there-good-morning.wav" in last["status"]
    )
    # the files are named after the words, in the chosen format, with the same captions
    assert [os.path.basename(f) for f in last["files"]] == [
        "hello-there-good-morning.wav", "hello-there-good-morning.srt",
        "hello-there-good-morning.vtt",
    ]  # fmt: skip
    assert last["audio"] == last["files"][0]
    wav = load_audio(last["audio"], RATE)
    assert wav.size == speech.audio.size
    np.testing.assert_allclose(wav, speech.audio, atol=1 / 32767)  # 16-bit WAV
    for path in last["files"][1:]:
        cues, _ = read_captions(path)
        assert [c.text for c in cues] == [s.text for s in speech.segments]
    assert last["captions"] == caption_rows(speech.segments)
    assert [row[2] for row in last["captions"]] == ["Hello there.", "Good morning."]


def test_every_format_is_written_and_reads_back(ui, tmp_path):
    speech = run(ui, text="Hello there.", stream=False, format="wav")[-1]["speech"]
    for name, (fmt, suffix) in FORMATS.items():
        audio, files = write_files(speech, str(tmp_path / fmt), name)
        assert os.path.basename(audio) == f"hello-there{suffix}" and audio == files[0]
        assert abs(load_audio(audio, RATE).size - speech.audio.size) < 0.1 * RATE, name
        assert sorted(os.listdir(tmp_path / fmt)) == sorted(os.path.basename(f) for f in files)


def test_streaming_shows_audio_and_captions_as_they_come(ui):
    updates = run(ui, text="Hello there. Good morning.", format="mp3")
    assert updates[0]["status"] == "**Generating…**" and updates[0]["captions"] == []
    played = [u["live"] for u in updates if u.get("live") is not None]
    live = [samples for _, samples in played]
    shown = [u["captions"] for u in updates[1:-1] if "captions" in u]
    speech = updates[-1]["speech"]
    assert len(live) >= 2 and all(rate == RATE for rate, _ in played)
    np.testing.assert_allclose(
        np.concatenate(live) / 32767.0, speech.audio, atol=1 / 32767
    )  # what was played is the audio kept
    assert [len(rows) for rows in shown] == sorted(len(rows) for rows in shown)
    assert shown[-1] == caption_rows(speech.segments)
    assert any("s of audio so far" in u["status"] for u in updates[1:-1])
    assert updates[-1]["audio"].endswith("hello-there-good-morning.mp3")
    assert load_audio(updates[-1]["audio"], RATE).size > 0


def test_finishing_controls_reach_the_audio(ui):
    text = "Hello there."
    plain = run(ui, text=text, stream=False, max_steps=60)[-1]["speech"]
    faster = run(ui, text=text, stream=False, max_steps=60, tempo=2.0)[-1]["speech"]
    assert abs(faster.duration / plain.duration - 0.5) < 0.05
    higher = run(ui, text=text, stream=False, max_steps=60, pitch=3)[-1]["speech"]
    assert abs(higher.duration - plain.duration) < 0.05
    assert not np.allclose(higher.audio[: plain.audio.size], plain.audio[: higher.audio.size])
    loud = run(ui, text=text, stream=False, max_steps=60, loudness_on=True, loudness=-20)
    assert abs(dsp.integrated_loudness(loud[-1]["speech"].audio, RATE) - -20.0) < 0.5
    # off by default: the level is the model's own
    assert abs(dsp.integrated_loudness(plain.audio, RATE) - -20.0) > 3


# ---- interrupt --------------------------------------------------------------------------------


def stop_after(ui: WebUI, steps: int, request=None):
    """A progress bar that presses this session's Interrupt once the code pass has made
    ``steps`` steps."""

    def progress(value, desc=None):
        if value[0] >= steps:
            ui.interrupt(request)

    return progress


@pytest.mark.parametrize("stream", [False, True])
def test_interrupt_keeps_what_was_made_and_says_so(ui, stream):
    before = ui.interrupted
    last = run(ui, progress=stop_after(ui, 20), text="hello world", max_steps=2000, stream=stream)[
        -1
    ]
    speech = last["speech"]
    assert 0 < speech.duration < 2000 * 512 / RATE / 4
    assert last["status"].startswith(f"**Stopped after {speech.duration:.1f} s**")
    assert "kept" in last["status"] and last["audio"] and len(last["files"]) == 3
    assert len(speech.segments) == 1  # the cut sentence keeps its caption
    assert ui.interrupted == before + 1


def test_an_interrupt_stops_only_its_own_session(ui):
    mine, theirs = SimpleNamespace(session_hash="mine"), SimpleNamespace(session_hash="theirs")
    last = run(ui, mine, stop_after(ui, 5, theirs), text="hello world", max_steps=60)[-1]
    assert last["status"].startswith("**Done**")
    assert last["speech"].duration > 1.0  # ran to its steps
    assert ui._session(theirs).flag.is_set() and not ui._session(mine).flag.is_set()


def test_speak_takes_the_callers_cancel_flag(chat):
    flag = Interrupt()
    full = chat.speak("hello world", seed=3, max_new_token=400)

    def progress(step, max_steps):
        if step >= 20:
            flag.set()

    cut = chat.speak("hello world", seed=3, max_new_token=400, cancel=flag, progress=progress)
    assert 0 < cut.duration < full.duration / 2
    chunks = chat.speak_stream("hello world", seed=3, max_new_token=400, cancel=flag)
    assert sum(c.audio.size for c in chunks) < 2 * 512  # already set: stops at once
    # chat.interrupt() still stops a call that has a flag of its own
    stopped = chat.speak(
        "hello world", seed=3, max_new_token=400, cancel=Interrupt(),
        progress=lambda step, _: chat.interrupt() if step >= 20 else None,
    )  # fmt: skip
    assert stopped.duration < full.duration / 2
    with pytest.raises(InputTypeError, match="cancel"):
        chat.speak("hello", cancel=True)


# ---- errors and warnings in the page ----------------------------------------------------------


def refused(ui: WebUI, caplog, **settings) -> tuple[str, str]:
    """(the error box's message, the status line) of a refused generation; checks that the
    log has one line for it and no traceback."""
    updates: list[dict] = []
    with caplog.at_level(logging.INFO, logger="chattts"), pytest.raises(gr.Error) as e:
        for update in ui.generate(Settings(**{**QUICK, **settings})):
            updates.append(update)
    assert e.value.print_exception is False
    assert not any(r.exc_info for r in caplog.records)
    assert any(r.getMessage().startswith("refused: ") for r in caplog.records)
    assert updates[-1]["status"].startswith("**Error:**")
    return e.value.message, updates[-1]["status"]


def test_empty_text_is_shown_as_an_error(ui, caplog):
    message, line = refused(ui, caplog, text="   ")
    assert "nothing to speak" in message and "nothing to speak" in line


def test_ssml_errors_name_line_and_column(ui, caplog):
    message, line = refused(ui, caplog, text="<speak>\n  <p>Hello\n</speak>", ssml=True)
    assert "line 3, column" in message
    assert "line 3, column" in line


@pytest.mark.parametrize(
    "settings, words",
    [({"text": "a" * (MAX_TEXT_CHARS + 1)}, "chattts narrate"),
     ({"voice": "nobody"}, "unknown voice 'nobody'"),
     ({"voice": CUSTOM}, "Custom voice is empty"),
     ({"temperature": 0}, "temperature"),
     ({"tempo": 9.0}, "tempo")],
)  # fmt: skip
def test_mistakes_are_shown_in_the_page(ui, caplog, settings, words):
    message, line = refused(ui, caplog, **settings)
    assert words in message


def test_library_warnings_reach_the_page(ui):
    # gr.Warning is a toast in the page; outside a request Gradio issues it as a UserWarning
    with pytest.warns(UserWarning, match="U\\+2603"):
        last = run(ui, text="Hello ☃ there.")[-1]
    assert any("'☃' (U+2603)" in w for w in last["warnings"])
    assert "⚠ removed 1 character" in last["status"]
    doc = '<speak><phoneme alphabet="ipa" ph="x">hello</phoneme> there</speak>'
    with pytest.warns(UserWarning, match="phoneme"):
        last = run(ui, text=doc, ssml=True)[-1]
    assert any("phoneme" in w for w in last["warnings"])


def test_ssml_mode_speaks_breaks_and_captions(ui):
    doc = '<speak><p>Hello there.</p><break time="700ms"/><p>Good morning.</p></speak>'
    speech = run(ui, text=doc, ssml=True, stream=False)[-1]["speech"]
    first, second = speech.segments
    assert (first.text, second.text) == ("Hello there.", "Good morning.")
    assert second.start - first.end >= 0.7 - 1e-6


# ---- the Voice section ------------------------------------------------------------------------


def test_the_voice_list_and_its_defaults(ui, chat):
    values = [v for _, v in ui.voices.choices()]
    assert values[0] == DEFAULT_VOICE and values[-1] == CUSTOM
    speaker, seed, note = ui.on_voice(DEFAULT_VOICE)
    assert speaker == chat.sample_random_speaker(2) and seed == 2 and "seed\\_2" in note
    # the mix's two defaults are mixable: Mix works as the page opens
    a, b = (v for _, v in ui.voices.mixable()[:2])
    spec = ui.mix(a, b, 0.25)
    assert spec == "seed_2*0.75+seed_1111*0.25"
    parts = [(chat.sample_random_speaker(2), 0.75), (chat.sample_random_speaker(1111), 0.25)]
    speaker, seed, note = ui.on_voice(spec)  # what the list shows once the mix is picked
    assert speaker == mix_speakers(parts) and seed == gr.update() and "Speaking with" in note
    assert mix_spec(a, b, 0) == a and mix_spec(a, b, 1) == b
    _, _, note = ui.on_voice("nobody")
    assert note.startswith("⚠") and "unknown voice" in note


def test_seeds_and_edits_pick_the_voice(ui):
    assert ui.on_seed(1234.0) == "seed_1234"
    assert ui.on_seed(None) == gr.update() and ui.on_seed(-1) == gr.update()
    seed, spec = ui.random_voice()
    assert spec == f"seed_{seed}"
    assert ui.to_custom("pasted") == CUSTOM


def recording(chat, tmp_path) -> str:
    """A second of speech in the voice of seed 7, as a WAV file."""
    params = InferCodeParams(
        spk_emb=chat.sample_random_speaker(7), manual_seed=1, min_new_token=40,
        max_new_token=50, show_tqdm=False,
    )  # fmt: skip
    path = str(tmp_path / "sample.wav")
    save_audio(path, next(chat.synthesize(["hello"], [params]))[0], RATE)
    return path


def test_a_sample_recording_speaks_as_the_same_library_voice(ui, chat, tmp_path):
    code, voice = ui.sample_code(recording(chat, tmp_path))
    assert voice == CUSTOM and code
    custom = run(ui, voice=CUSTOM, sample=code, sample_text="hello", stream=False)[-1]["speech"]
    _, _, _, note = ui.save_voice("sampled", CUSTOM, "", code, "hello")
    assert "Saved" in note
    saved = run(ui, voice="sampled", stream=False)[-1]["speech"]
    np.testing.assert_array_equal(custom.audio, saved.audio)
    default = run(ui, stream=False)[-1]["speech"]
    assert default.audio.shape != custom.audio.shape or not np.allclose(default.audio, custom.audio)
    # a voice made from a recording has no speaker vector: not offered to the mix
    assert "sampled" in [v for _, v in ui.voices.choices()]
    assert "sampled" not in [v for _, v in ui.voices.mixable()]
    with pytest.raises(gr.Error, match="cannot be mixed"):
        ui.mix("sampled", DEFAULT_VOICE, 0.5)
    with pytest.raises(gr.Error, match="transcript"):
        ui.save_voice("nameless", CUSTOM, "", code, "")


def test_saving_voices_into_the_library(ui, chat):
    choices, mix_a, _, note = ui.save_voice("narrator", "seed_42", "", "", "")
    assert choices["value"] == "narrator" and ("narrator", "narrator") in choices["choices"]
    assert ("narrator", "narrator") in mix_a["choices"]
    assert ui.voices.library.get("narrator").voice.speaker == chat.sample_random_speaker(42)
    ui.save_voice("pasted", CUSTOM, chat.sample_random_speaker(5), "", "")
    assert ui.on_voice("pasted")[0] == chat.sample_random_speaker(5)
    with pytest.raises(gr.Error, match="exists"):
        ui.save_voice("narrator", "seed_1", "", "", "")


def test_voices_file_names_are_offered_and_spoken(chat, tmp_path):
    ui = WebUI(chat, voices={"host": 42}, library=VoiceLibrary(str(tmp_path / "v")))
    assert ("host", "host") in ui.voices.choices()
    host = run(ui, voice="host", stream=False)[-1]["speech"]
    seed = run(ui, voice="seed_42", stream=False)[-1]["speech"]
    np.testing.assert_array_equal(host.audio, seed.audio)
    other = run(ui, voice="seed_1111", stream=False)[-1]["speech"]
    assert other.audio.shape != host.audio.shape or not np.allclose(other.audio, host.audio)


def test_a_bad_sample_recording_is_an_error(ui, tmp_path):
    path = tmp_path / "noise.wav"
    path.write_bytes(b"RIFF not a wave file")
    with pytest.raises(gr.Error, match="cannot read the sample recording"):
        ui.sample_code(str(path))
    assert ui.sample_code(None) == ("", gr.update())


# ---- text files and SSML ----------------------------------------------------------------------


def test_text_files_open_into_the_text_box(ui, tmp_path):
    md = tmp_path / "notes.md"
    md.write_text("# Notes\n\nSome *important* words,\n[a link](https://example.org).\n\n- one\n")
    text, ssml, line = ui.open_file(str(md))
    assert text == "Notes\n\nSome important words, a link.\n\none" and ssml is False
    assert "notes.md" in line and f"{len(text)} characters" in line
    txt = tmp_path / "story.txt"
    txt.write_text("First line\nof a paragraph.\n\nSecond paragraph.", encoding="utf-8")
    assert ui.open_file(str(txt))[0] == "First line of a paragraph.\n\nSecond paragraph."


@pytest.mark.parametrize(
    "name, content, words",
    [("big.txt", b"a " * (MAX_TEXT_FILE_BYTES // 2 + 1), "opens text files up to"),
     ("long.txt", b"word " * (MAX_TEXT_CHARS // 4), "chattts narrate long.txt"),
     ("latin.txt", "caf\u00e9".encode("latin-1"), "not UTF-8"),
     ("empty.md", b"<!-- nothing -->", "no text"),
     ("book.epub", b"PK", "open a .txt or .md file")],
)  # fmt: skip
def test_bad_text_files_are_errors(ui, tmp_path, name, content, words):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(gr.Error, match=words):
        ui.open_file(str(path))


def test_ticking_ssml_wraps_the_text():
    assert as_ssml("Fish & chips.\n\nTwo < three") == (
        "<speak>\n  <p>Fish &amp; chips.</p>\n  <p>Two &lt; three</p>\n</speak>"
    )
    doc = "<speak>Hi</speak>"
    assert as_ssml(doc) == doc
    ui = WebUI.__new__(WebUI)
    assert ui.on_ssml(True, "Hi") == "<speak>\n  <p>Hi</p>\n</speak>"
    assert ui.on_ssml(False, "<speak>Hi</speak>") == gr.update()


def test_download_names_and_caption_times():
    assert file_stem(["Hello there!", "How are you?"]) == "hello-there-how-are-you"
    assert file_stem(["你好，世界"]) == "你好-世界"
    assert file_stem(["?!"]) == "speech"
    long = file_stem(["word " * 40])
    assert len(long) <= MAX_NAME_CHARS and long.startswith("word-word")
    assert clock(75.254) == "1:15.25" and clock(0) == "0:00.00"
