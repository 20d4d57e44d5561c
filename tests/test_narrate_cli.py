"""``chattts narrate`` as users run it: killed with SIGKILL mid-book and run again, bad inputs
as one line; and ``chattts say`` warning about a text that gives no audio."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_main

from chattts import cli
from chattts.audio import load_audio

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("restore_logger")]

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "fixtures" / "tiny"
MODEL = ["--model-dir", str(TINY), "--no-verify"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
ENV.pop("CHATTTS_VOICES", None)
FAST = [*MODEL, "--max-new-token", "24", "--no-refine", "--seed", "3", "--batch", "2"]

WORDS = ["wind", "lamp", "steps", "river", "dog", "letter", "door", "clock", "rain", "road"]


def book_text() -> str:
    """Three chapters of two paragraphs of six different sentences each."""
    parts, n = ["# A Killed Book"], 0
    for chapter in range(1, 4):
        parts.append(f"## Chapter {chapter}")
        for _ in range(2):
            sentences = []
            for _ in range(6):
                a, b = WORDS[n % 10], WORDS[(n * 7 + 3) % 10]
                sentences.append(f"The {a} and the {b} met on day {n + 1}.")
                n += 1
            parts.append(" ".join(sentences))
    return "\n\n".join(parts) + "\n"


def narrate(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "chattts", "narrate", *args],
        cwd=cwd,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def rendered(folder: Path) -> list[tuple[str, int]]:
    """(segment id, run) of every render the store logged (read while the writer runs)."""
    db = folder / "narration.sqlite"
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return con.execute("SELECT id, run FROM renders ORDER BY n").fetchall()
    except sqlite3.OperationalError:  # the tables are not made yet
        return []


def test_killed_mid_book_then_resumed_equals_an_uninterrupted_run(tmp_path):
    (tmp_path / "book.md").write_text(book_text(), encoding="utf-8")
    args = ["book.md", *FAST, "--format", "wav"]
    whole = narrate(*args, "-o", "whole", cwd=tmp_path)
    killed = narrate(*args, "-o", "killed", cwd=tmp_path)
    deadline = time.monotonic() + 300
    while len(rendered(tmp_path / "killed")) < 4 and killed.poll() is None:
        assert time.monotonic() < deadline, "the narration never committed a batch"
        time.sleep(0.005)
    killed.send_signal(signal.SIGKILL)
    killed.communicate()
    out, err = whole.communicate(timeout=300)
    assert whole.returncode == 0, err.decode()
    assert killed.returncode == -signal.SIGKILL, "it finished before it could be killed"
    first = rendered(tmp_path / "killed")
    total = json.loads((tmp_path / "whole" / "manifest.json").read_text())["segments"]
    assert 4 <= len(first) < total and not (tmp_path / "killed" / "manifest.json").exists()
    # the same command again goes on where it stopped
    again = narrate(*args, "-o", "killed", cwd=tmp_path)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err.decode()
    assert out.decode().split() == ["killed/book.m4b", "killed/manifest.json"]
    runs = rendered(tmp_path / "killed")
    ids = [i for i, _ in runs]
    assert len(ids) == len(set(ids)) == total  # no finished segment rendered twice
    assert runs[: len(first)] == first and {r for _, r in runs[len(first) :]} == {2}
    # the same files as the uninterrupted run: manifest, chapter audio, captions, the book
    a, b = tmp_path / "whole", tmp_path / "killed"
    manifest = json.loads((a / "manifest.json").read_text())
    assert json.loads((b / "manifest.json").read_text()) == manifest
    for chapter in manifest["chapters"]:
        x, y = load_audio(a / chapter["file"]), load_audio(b / chapter["file"])
        assert x.size == y.size == chapter["samples"]
        np.testing.assert_allclose(x, y, atol=1e-4)
        assert (a / chapter["captions"]).read_text() == (b / chapter["captions"]).read_text()
    np.testing.assert_allclose(load_audio(a / "book.m4b"), load_audio(b / "book.m4b"), atol=1e-3)
    assert not [p for p in b.iterdir() if ".tmp-" in p.name]


def test_bad_inputs_are_one_line_before_the_model_loads(capsys, tmp_path, monkeypatch):
    import chattts.cli.narrate as command

    monkeypatch.setattr(command, "open_chat", lambda *a: pytest.fail("the model was loaded"))
    monkeypatch.chdir(tmp_path)
    Path("latin1.txt").write_bytes("Caf\xe9".encode("latin-1"))
    Path("empty.md").write_text("\n\n", encoding="utf-8")
    Path("bad.epub").write_bytes(b"no zip")
    Path("ok.txt").write_text("Hello there.", encoding="utf-8")
    Path("file").write_text("x")
    cases = [
        (["latin1.txt"], "latin1.txt: not UTF-8 text (byte 0xe9 at byte offset 3)"),
        (["empty.md"], "empty.md: nothing to narrate"),
        (["bad.epub"], "bad.epub: not an EPUB (not a zip file"),
        (["missing.txt"], "missing.txt: No such file or directory"),
        (["ok.txt", "--chapter-voice", "2=seed_4"], "the document has chapters 1-1"),
        (["ok.txt", "--chapter-voice", "one=seed_4"], "use N=VOICE"),
        (["ok.txt", "--voice", "nobody", "--voices", "lib"], "nobody"),
        (["ok.txt", "--format", "xyz"], "xyz"),
        (["ok.txt", "-o", "file"], "file: cannot write in the output folder"),
        (["ok.txt", "--chapter-pattern", "("], "not a regular expression"),
    ]
    for args, needle in cases:
        code, err = cli_main(
            capsys, "narrate", *args, *(["-o", "out"] * ("-o" not in args)), *MODEL
        )
        assert code == 1 and len(err) == 1, (args, err)
        assert err[0].startswith("chattts: error: ") and needle in err[0], (args, err)
    code, err = cli_main(capsys, "narrate", "ok.txt", "-o", "out", "--model-dir", "nope")
    assert (code, err) == (1, ["chattts: error: model folder not found: nope"])
    assert not Path("out", "narration.sqlite").exists()  # nothing was written for a mistake


@pytest.mark.parametrize("stream", [False, True])
def test_say_warns_when_a_text_gives_no_audio(capsys, tmp_path, monkeypatch, chat, stream):
    from chattts.audio import Speech
    from chattts.pipeline.assembler import SpeechChunk

    silent = np.zeros(0, np.float32)
    monkeypatch.setattr(chat, "speak", lambda text, **kw: Speech(silent, 24000))
    monkeypatch.setattr(chat, "speak_stream", lambda text, **kw: iter([SpeechChunk(silent)]))
    monkeypatch.setattr(cli.say, "load_chat", lambda args: chat)
    out = str(tmp_path / "out.wav")
    extra = ["--stream"] if stream else []
    code, err = cli_main(capsys, "say", "Hello there.", "-o", out, "--seed", "3", *extra, *MODEL)
    assert code == 0
    assert err == [
        "chattts: WARNING: no audio for 'Hello there.': the model ended it at its first step; "
        "try another --manual-seed"
    ]


def test_the_progress_bar_shows_chapters_speech_and_speed(capsys):
    from chattts.cli.narrate import progress_bar
    from chattts.narrate.render import NarrationProgress

    with progress_bar(True) as update:
        update(NarrationProgress(0, 3, 2, 10, 4.0))
        update(NarrationProgress(1, 3, 6, 10, 12.0, 8.0, 4, 2.0))
    err = capsys.readouterr().err
    assert "6/10" in err and "chapters 1/3, 12 s of speech, RTF 0.25" in err
    with progress_bar(False) as update:
        assert update is None


def test_caption_format_and_finishing_options(capsys):
    from chattts.audio.finish import Finish
    from chattts.cli.narrate import finish_options

    parse = cli.build_parser().parse_args
    args = parse(["narrate", "b.md", "-o", "o", "--captions", "srt", "--tempo", "1.25"])
    assert args.captions == "srt" and finish_options(args) == Finish(tempo=1.25)
    args = parse(["narrate", "b.md", "-o", "o", "--loudness", "-16", "--gain", "-2"])
    assert args.captions == "json" and finish_options(args) == Finish(gain=-2.0, loudness=-16.0)
    assert parse(["narrate", "b.md", "-o", "o", "--no-captions"]).captions is None
    assert parse(["narrate", "b.md", "-o", "o", "--captions"]).captions == "json"
    for bad in (["--tempo", "9"], ["--pitch", "13"], ["--captions", "ass"]):
        with pytest.raises(SystemExit):
            parse(["narrate", "b.md", "-o", "o", *bad])
        assert bad[0] in capsys.readouterr().err
