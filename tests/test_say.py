"""``chattts say`` through the speech path (``Chat.speak``, ``Chat.speak_stream``): captions,
finishing, SSML from a file or stdin, and files written all or nothing (tiny model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from chattts import cli
from chattts.audio import load_audio
from chattts.audio.dsp import integrated_loudness
from chattts.captions import read_captions
from chattts.params import Sampling
from chattts.pipeline.assembler import SpeechChunk

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "fixtures" / "tiny"
MODEL = ["--model-dir", str(TINY), "--no-verify"]
SEEDS = ["--seed", "3", "--manual-seed", "1", "--no-refine", "--max-new-token", "16"]
TEXT = "Hello there. How are you today? Fine, thanks."
DOC = (
    '<speak>Hello <mark name="here"/>there. <break time="400ms"/>'
    '<prosody volume="-6dB">How are you today?</prosody></speak>'
)
RATE = 24000
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
ENV.pop("CHATTTS_VOICES", None)


#: cli.main() configures the "chattts" logger: every test here undoes it.
pytestmark = pytest.mark.usefixtures("restore_logger")


def say(capsys, *args: str) -> tuple[int, list[str], list[str]]:
    """``chattts say`` in this process: (exit status, stdout lines, stderr lines)."""
    try:
        code = cli.main(["say", *args])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def spoken(chat, text: str, **options):
    """What ``say ... --seed 3 --manual-seed 1 --no-refine --max-new-token 16`` speaks."""
    voice = chat.sample_random_speaker(seed=3)
    return chat.speak(text, voice=voice, seed=1, max_new_token=16, **options)


def cues_of(speech) -> list[tuple[float, float, str]]:
    return [(c.start, c.end, c.text) for c in speech.captions()]


def read(path) -> list[tuple[float, float, str]]:
    return [(c.start, c.end, c.text) for c in read_captions(path)[0]]


@pytest.mark.parametrize("suffix", ["srt", "vtt", "json"])
def test_captions_read_back_are_the_speechs_segments(chat, capsys, tmp_path, suffix):
    out, caps = tmp_path / "talk.wav", tmp_path / f"talk.{suffix}"
    code, printed, err = say(capsys, TEXT, "-o", str(out), "--captions", str(caps), *SEEDS, *MODEL)
    assert code == 0 and err == [] and printed == [str(out), str(caps)]
    speech = spoken(chat, TEXT, captions=True)
    assert len(speech.segments) == 3
    wav = load_audio(out, RATE)
    assert wav.size == speech.audio.size and np.abs(wav - speech.audio).max() < 1e-3
    step = 1e-6 if suffix == "json" else 1e-3  # JSON keeps microseconds, SRT/VTT milliseconds
    for got, want in zip(read(caps), cues_of(speech), strict=True):
        assert got[2] == want[2]
        assert abs(got[0] - want[0]) <= step and abs(got[1] - want[1]) <= step


def test_ssml_from_a_file_with_its_marks_and_from_stdin_end_to_end(chat, capsys, tmp_path):
    doc = tmp_path / "doc.xml"
    doc.write_text(DOC, encoding="utf-8")
    out, caps = tmp_path / "a.wav", tmp_path / "a.json"
    code, _, err = say(
        capsys, "--ssml", str(doc), "-o", str(out), "--captions", str(caps), *SEEDS, *MODEL
    )
    assert code == 0 and err == []
    speech = spoken(chat, DOC, ssml=True, captions=True)
    cues, marks = read_captions(caps)
    assert [c.text for c in cues] == ["Hello", "there.", "How are you today"]
    assert marks == [("here", pytest.approx(speech.marks[0].time, abs=1e-6))]
    assert cues[2].start - cues[1].end == pytest.approx(0.4, abs=1e-6)  # the <break>
    assert load_audio(out, RATE).size == speech.audio.size
    # the same document on stdin, through the chattts command in a subprocess
    cmd = [sys.executable, "-m", "chattts", "say", "--ssml", "-", "-o", "b.mp3"]
    cmd += ["--captions", "b.json", *SEEDS, *MODEL]
    run = subprocess.run(
        cmd, input=DOC.encode(), cwd=tmp_path, env=ENV, capture_output=True, timeout=600
    )
    assert run.returncode == 0, run.stderr.decode()
    assert run.stdout.decode().split() == ["b.mp3", "b.json"]
    assert read_captions(tmp_path / "b.json") == (cues, marks)
    assert abs(load_audio(tmp_path / "b.mp3", RATE).size - speech.audio.size) <= 1200


def test_finishing_options_change_the_audio_as_asked(chat, capsys, tmp_path):
    plain = spoken(chat, TEXT)
    fast = tmp_path / "fast.wav"
    assert say(capsys, TEXT, "-o", str(fast), "--tempo", "2", *SEEDS, *MODEL)[0] == 0
    assert abs(load_audio(fast, RATE).size - plain.audio.size / 2) <= 3  # three segments
    loud = tmp_path / "loud.wav"
    assert say(capsys, TEXT, "-o", str(loud), "--loudness", "-23", *SEEDS, *MODEL)[0] == 0
    wav = load_audio(loud, RATE)
    assert wav.size == plain.audio.size
    assert integrated_loudness(wav, RATE) == pytest.approx(-23, abs=0.5)
    quiet = tmp_path / "quiet.wav"
    assert say(capsys, TEXT, "-o", str(quiet), "--gain", "-12", *SEEDS, *MODEL)[0] == 0
    mid = slice(240, plain.audio.size - 240)  # past the 5 ms fades
    want = plain.audio[mid] * 10 ** (-12 / 20)
    assert np.abs(load_audio(quiet, RATE)[mid] - want).max() < 1e-3


def test_streamed_and_joined_captions_equal_the_whole_files(capsys, tmp_path):
    texts = ["Hello there. How are you?", "Second text."]
    common = ["--join", "--gap", "0.5", "--captions"]
    whole, streamed = tmp_path / "whole.wav", tmp_path / "streamed.wav"
    assert (
        say(capsys, *texts, "-o", str(whole), *common, str(tmp_path / "w.vtt"), *SEEDS, *MODEL)[0]
        == 0
    )
    args = [*texts, "-o", str(streamed), "--stream", *common, str(tmp_path / "s.vtt")]
    assert say(capsys, *args, *SEEDS, *MODEL)[0] == 0
    assert read(tmp_path / "s.vtt") == read(tmp_path / "w.vtt")
    a, b = load_audio(whole, RATE), load_audio(streamed, RATE)
    assert a.size == b.size and np.abs(a - b).max() < 1e-4
    first, _, third = read(tmp_path / "w.vtt")
    assert third[0] - first[1] > 0.5  # the gap, between the texts


def test_a_named_voice_is_named_in_the_captions_a_seed_is_not(capsys, tmp_path):
    (tmp_path / "voices.json").write_text(json.dumps({"alice": 3}))
    named = ["--voices", str(tmp_path / "voices.json"), "--voice", "alice"]
    out = tmp_path / "a.wav"
    rest = ["--manual-seed", "1", "--no-refine", "--max-new-token", "16", *MODEL]
    assert (
        say(
            capsys,
            "Hi there.",
            "-o",
            str(out),
            "--captions",
            str(tmp_path / "a.json"),
            *named,
            *rest,
        )[0]
        == 0
    )
    assert (
        say(
            capsys,
            "Hi there.",
            "-o",
            str(out),
            "--captions",
            str(tmp_path / "b.json"),
            "--seed",
            "3",
            *rest,
        )[0]
        == 0
    )
    a = json.loads((tmp_path / "a.json").read_text())["captions"]
    b = json.loads((tmp_path / "b.json").read_text())["captions"]
    assert [c["voice"] for c in a] == ["alice"] and "voice" not in b[0]
    assert [c["end"] for c in a] == [c["end"] for c in b]  # alice is the voice of seed 3


@pytest.mark.parametrize(
    "args, code, needle",
    [
        (["hi", "--captions", "talk.txt"], 1, "caption format"),
        (["hi", "--captions", "no/such/dir/talk.srt"], 1, "output folder not found"),
        (["hi", "--tempo", "0.2"], 2, "--tempo"),
        (["hi", "--tempo", "4.5"], 2, "--tempo"),
        (["hi", "--tempo", "fast"], 2, "--tempo"),
        (["hi", "--pitch", "12.5"], 2, "--pitch"),
        (["hi", "--gain", "41"], 2, "--gain"),
        (["hi", "--loudness", "1"], 2, "--loudness"),
        (["hi", "--loudness", "-71"], 2, "--loudness"),
        (["hi", "--speed", "10"], 2, "--speed"),
        (["hi", "--ssml", "doc.xml"], 2, "not allowed"),
        ([], 2, "--ssml"),
        (["--ssml", "no/such/doc.xml"], 1, "no/such/doc.xml"),
        (["hi", "--play", "--captions", "a.srt"], 1, "--captions"),
    ],
)
def test_mistakes_are_one_line_before_the_model_loads(
    capsys, tmp_path, monkeypatch, args, code, needle
):
    monkeypatch.chdir(tmp_path)
    status, out, err = say(capsys, *args, "--model-dir", "/nonexistent")  # never opened
    assert status == code and len(err) == 1 and needle in err[0], err
    assert err[0].startswith("chattts") and "error:" in err[0]
    assert list(tmp_path.iterdir()) == [] and out == []


def test_a_bad_ssml_document_names_its_line_before_the_model_loads(capsys, tmp_path):
    doc = tmp_path / "doc.xml"
    doc.write_text("<speak>\n  <prosody rate='zoom'>x</prosody>\n</speak>", encoding="utf-8")
    status, _, err = say(capsys, "--ssml", str(doc), "--model-dir", "/nonexistent")
    assert status == 1 and err == ["chattts: error: line 2, column 3: unknown prosody rate 'zoom'"]
    doc.write_text("<speak><foo>Hi there.</foo></speak>", encoding="utf-8")
    status, _, err = say(capsys, "--ssml", str(doc), "--model-dir", "/nonexistent")
    assert err[0] == f"chattts: WARNING: {doc}: unknown SSML element <foo>: its text is spoken"
    assert status == 1 and "model folder not found" in err[1]  # checked, then the model


def test_nothing_is_half_written_when_writing_fails(chat, capsys, tmp_path, monkeypatch):
    import chattts.audio

    monkeypatch.setattr(cli.say, "load_chat", lambda args: chat)
    encode, calls = chattts.audio.encode_audio, []

    def second_fails(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return encode(*a, **k)

    monkeypatch.setattr(chattts.audio, "encode_audio", second_fails)
    out, caps = str(tmp_path / "o.mp3"), str(tmp_path / "o.srt")
    status, _, err = say(capsys, "one", "two", "-o", out, "--captions", caps, *SEEDS)
    assert status == 1 and len(err) == 1 and "No space left on device" in err[0]
    assert list(tmp_path.iterdir()) == []  # neither the first file nor any captions


def test_a_stream_that_fails_removes_its_file(chat, capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(cli.say, "load_chat", lambda args: chat)

    def broken(text, **kw):
        yield SpeechChunk(np.full(4800, 0.1, np.float32))
        raise RuntimeError("the model went away")

    monkeypatch.setattr(chat, "speak_stream", broken)
    out = tmp_path / "o.wav"
    args = ["hello", "-o", str(out), "--stream", "--captions", str(tmp_path / "o.srt"), *SEEDS]
    with pytest.raises(RuntimeError):
        cli.say.cmd_say(cli.build_parser().parse_args(["say", *args]))
    assert list(tmp_path.iterdir()) == []


def test_refine_max_new_token_reaches_the_refine_pass():
    assert Sampling(refine_max_new_token=8).refine_params(1).max_new_token == 8
    assert Sampling().refine_params(1).max_new_token == 384


def test_tempo_without_rubber_band_is_one_line_before_the_model_loads(
    capsys, monkeypatch, tmp_path
):
    monkeypatch.setitem(sys.modules, "pedalboard", None)  # not installed
    monkeypatch.chdir(tmp_path)
    status, _, err = say(capsys, "hi", "--tempo", "1.5", "--model-dir", "/nonexistent")
    assert status == 1 and len(err) == 1 and "pip install 'chattts[stretch]'" in err[0], err
    doc = tmp_path / "doc.xml"
    doc.write_text('<speak><prosody rate="fast">hi there</prosody></speak>', encoding="utf-8")
    status, _, err = say(capsys, "--ssml", str(doc), "--model-dir", "/nonexistent")
    assert status == 1 and len(err) == 1 and "chattts[stretch]" in err[0], err
