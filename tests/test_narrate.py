"""Narration on the tiny model, in process: the files, chapter marks read back, manifest,
captions, resuming, changed paragraphs, redraws, full disks and busy folders (chattts.narrate)."""

from __future__ import annotations

import errno
import json
import logging
import shutil
import sqlite3
import subprocess
from dataclasses import replace

import av
import numpy as np
import pytest

import chattts
from chattts.audio import load_audio
from chattts.errors import NarrationError, StoreError
from chattts.narrate import book, render
from chattts.narrate.book import OutputOptions
from chattts.narrate.documents import Chapter, Document
from chattts.narrate.narration import Narration
from chattts.narrate.segments import (
    NarrationSettings,
    NarrationVoice,
    Pauses,
    derived_seed,
    plan,
    segment_params,
)
from chattts.narrate.store import ProgressStore

DOC = Document(
    "A Small Book",
    (
        Chapter("One", ("One", "It was a bright cold day. The clocks struck thirteen.", "Home.")),
        Chapter("Two", ("Two", "A second chapter, short.")),
        Chapter("Three", ("Three", "The end. Really.")),
    ),
)
WAV = OutputOptions(format="wav", book="m4b")


@pytest.fixture(scope="module")
def settings(chat) -> NarrationSettings:
    voice = NarrationVoice(chat.sample_random_speaker(seed=3), label="seed_3")
    code = chattts.InferCodeParams(max_new_token=16)
    return NarrationSettings(voice, code=code, seed=5, model=render.model_identity(chat))


def narrate(chat, folder, settings, doc=DOC, output=WAV, **kw) -> tuple[dict, Narration]:
    with Narration(doc, str(folder), settings, output, batch=2, **kw) as n:
        return n.run(chat), n


def renders(folder, run=None) -> list[tuple[str, int, int]]:
    with ProgressStore(str(folder)) as store:
        return store.renders(run)


def test_a_book_its_chapters_marks_captions_and_manifest(chat, settings, tmp_path):
    manifest, n = narrate(chat, tmp_path, settings)
    assert n.state == "done" and len(n.id) == 32
    chapters = plan(DOC, settings)
    # the manifest: chapters with titles, files, durations; the book's length is their sum
    assert [c["title"] for c in manifest["chapters"]] == ["One", "Two", "Three"]
    assert manifest["segments"] == sum(len(c) for c in chapters) == 9
    assert manifest["voice"] == "seed_3" and manifest["chattts"] == chattts.__version__
    assert manifest["redrawn"] == [] and manifest["settings"]["seed"] == 5
    assert manifest["samples"] == sum(c["samples"] for c in manifest["chapters"])
    rate, at = manifest["sample_rate"], 0
    with ProgressStore(str(tmp_path)) as store:
        for c, segments in zip(manifest["chapters"], chapters, strict=True):
            assert c["start"] == at / rate
            # each chapter file: its segments and their pauses, to the sample
            expect = sum(store.segment(s.id).samples + round(s.pause * rate) for s in segments)
            wav = load_audio(tmp_path / c["file"])
            assert c["samples"] == expect == wav.size
            first = segments[0]
            stored = np.rint(store.audio(first.id) * 32767)  # the 16-bit samples kept
            np.testing.assert_array_equal(np.rint(wav[: stored.size] * 32768), stored)
            caps = json.loads((tmp_path / c["captions"]).read_text(encoding="utf-8"))["captions"]
            assert [x["text"] for x in caps] == [s.text for s in segments]
            assert caps[0]["start"] == 0 and all(
                a["end"] <= b["start"] for a, b in zip(caps, caps[1:], strict=False)
            )
            assert caps[-1]["end"] <= c["duration"]
            at += c["samples"]
    # the book: its chapter marks read back by PyAV, its length the manifest's, to the sample
    with av.open(str(tmp_path / "book.m4b")) as f:
        marks = f.chapters()
        stream = f.streams.audio[0]
        assert stream.duration * stream.time_base * rate == manifest["samples"]
    assert [m["metadata"]["title"] for m in marks] == ["One", "Two", "Three"]
    starts = [int(m["start"] * m["time_base"] * rate) for m in marks]
    assert starts == [round(c["start"] * rate) for c in manifest["chapters"]]
    written = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    assert written == manifest


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe is not on PATH")
def test_ffprobe_reads_the_chapter_marks(chat, settings, tmp_path):
    manifest, _ = narrate(chat, tmp_path, settings, output=OutputOptions(book="mp3"))
    for name in ("book.mp3", "chapter_01.mp3"):
        assert (tmp_path / name).exists()
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_chapters", "-of", "json", str(tmp_path / "book.mp3")],
        capture_output=True,
        text=True,
        check=True,
    )
    found = json.loads(out.stdout)["chapters"]
    assert [c["tags"]["title"] for c in found] == ["One", "Two", "Three"]
    starts = [float(c["start_time"]) for c in found]
    assert starts == pytest.approx([c["start"] for c in manifest["chapters"]], abs=1e-3)


def test_a_second_run_renders_nothing_and_rewrites_nothing(chat, settings, tmp_path):
    first, _ = narrate(chat, tmp_path, settings)
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir() if p.suffix == ".wav"}
    second, n = narrate(chat, tmp_path, settings)
    assert second == first and n.progress.rendered_segments == 0
    assert renders(tmp_path, run=2) == []
    assert stamps == {
        p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir() if p.suffix == ".wav"
    }
    # --force starts over: every segment rendered again, the same audio
    again, _ = narrate(chat, tmp_path, settings, force=True)
    assert again == first and len(renders(tmp_path)) == 9


def test_a_changed_paragraph_renders_only_its_segments(chat, settings, tmp_path):
    narrate(chat, tmp_path, settings)
    before = {p.name: p.read_bytes() for p in tmp_path.glob("chapter_*")}
    changed = replace(DOC.chapters[1], paragraphs=("Two", "A second chapter, changed. Twice."))
    doc = replace(DOC, chapters=(DOC.chapters[0], changed, DOC.chapters[2]))
    manifest, _ = narrate(chat, tmp_path, settings, doc=doc)
    new_ids = {s.id for s in plan(doc, settings)[1]} - {s.id for s in plan(DOC, settings)[1]}
    assert len(new_ids) == 2
    assert sorted(r[0] for r in renders(tmp_path, run=2)) == sorted(new_ids)
    after = {p.name: p.read_bytes() for p in tmp_path.glob("chapter_*")}
    assert [k for k in before if before[k] != after[k]] == [
        "chapter_02.captions.json",
        "chapter_02.wav",
    ]
    assert manifest["segments"] == 10
    # pauses change the files, never a segment: nothing is rendered
    quiet = replace(settings, pauses=Pauses(0.1, 0.2, 0.5))
    shorter, n = narrate(chat, tmp_path, quiet, doc=doc)
    assert n.progress.rendered_segments == 0 and shorter["samples"] < manifest["samples"]


def test_ids_and_seeds(settings):
    ids = [s.id for ch in plan(DOC, settings) for s in ch]
    assert len(set(ids)) == len(ids) and ids == [s.id for ch in plan(DOC, settings) for s in ch]
    other_voice = replace(settings, voice=NarrationVoice("x", label="x"))
    assert not set(ids) & {s.id for ch in plan(DOC, other_voice) for s in ch}
    assert not set(ids) & {s.id for ch in plan(DOC, replace(settings, seed=6)) for s in ch}
    seg = plan(DOC, settings)[0][2]
    seeds = [segment_params(settings, seg, k).manual_seed for k in range(3)]
    assert seeds == [derived_seed(5, seg.id, k) for k in range(3)] and len(set(seeds)) == 3
    # a chapter's own voice changes that chapter's ids only
    alt = replace(settings, chapter_voices=((2, NarrationVoice("y", label="y")),))
    changed = [
        a.id != b.id
        for x, y in zip(plan(DOC, settings), plan(DOC, alt), strict=True)
        for a, b in zip(x, y, strict=True)
    ]
    assert changed == [False] * 4 + [True] * 2 + [False] * 3
    assert segment_params(alt, plan(DOC, alt)[1][0]).spk_emb == "y"


def test_punctuation_alone_is_a_pause_not_speech(settings):
    doc = Document("T", (Chapter("T", ("First.", "* * *", "— …", "Second. 二。")),))
    texts = [s.text for s in plan(doc, settings)[0]]
    assert texts == ["First.", "Second.", "二。"]


def test_resumed_batches_are_the_uninterrupted_ones(settings):
    segments = [s for ch in plan(DOC, settings) for s in ch]
    every = render.batches(segments, {s.id for s in segments}, 2)
    for done in range(len(every)):
        finished = {s.id for b in every[:done] for s in b}
        left = render.batches(segments, {s.id for s in segments} - finished, 2)
        assert left == every[done:]


def silence_seed(monkeypatch, chat, seeds: set[int]) -> list[int]:
    """Chat.synthesize gives no audio to the items drawn with one of ``seeds``."""
    real = type(chat).synthesize
    drawn: list[int] = []

    def synthesize(self, texts, params, **kw):
        for wavs in real(self, texts, params, **kw):
            drawn.extend(p.manual_seed for p in params)
            yield [
                w[:0] if p.manual_seed in seeds else w for w, p in zip(wavs, params, strict=True)
            ]

    monkeypatch.setattr(type(chat), "synthesize", synthesize)
    return drawn


def test_a_silent_segment_is_drawn_again_and_reported(
    chat, settings, tmp_path, monkeypatch, caplog
):
    seg = plan(DOC, settings)[0][1]
    drawn = silence_seed(monkeypatch, chat, {derived_seed(settings.seed, seg.id, 0)})
    with caplog.at_level(logging.WARNING, logger="chattts"):
        manifest, n = narrate(chat, tmp_path, settings)
    again = derived_seed(settings.seed, seg.id, 1)
    assert again in drawn
    assert manifest["redrawn"] == [
        {"chapter": 1, "segment": 2, "text": seg.text, "draws": 2, "seed": again}
    ]
    assert "gave no audio (draw 1 of 5)" in caplog.text and n.progress.redraws == 1
    assert (seg.id, 1, 1) in renders(tmp_path)


def test_a_segment_that_stays_silent_fails_and_keeps_the_others(
    chat, settings, tmp_path, monkeypatch
):
    seg = plan(DOC, settings)[1][1]
    silence_seed(monkeypatch, chat, {derived_seed(settings.seed, seg.id, k) for k in range(5)})
    with pytest.raises(NarrationError, match=r"chapter 2, segment 2 gave no audio after 5 draws"):
        narrate(chat, tmp_path, settings)
    done = {r[0] for r in renders(tmp_path)}
    assert seg.id not in done and len(done) == 8  # every other segment
    with ProgressStore(str(tmp_path)) as store:
        assert store.state == "failed" and "gave no audio" in store.get("error")
    assert (tmp_path / "chapter_01.wav").exists() and not (tmp_path / "manifest.json").exists()


def test_a_full_disk_stops_cleanly_and_the_run_resumes(chat, settings, tmp_path, monkeypatch):
    real = book.audio.save_audio_chunks
    calls = []

    def full(path, chunks, *a, **kw):
        calls.append(path)
        if "chapter_02" in str(path) and len(calls) < 4:  # the disk is full, once
            with open(path, "wb") as f:
                f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, chunks, *a, **kw)

    monkeypatch.setattr(book.audio, "save_audio_chunks", full)
    with pytest.raises(StoreError, match=r"chapter_02.wav: cannot write: No space left on device"):
        narrate(chat, tmp_path, settings)
    assert not list(tmp_path.glob(".*tmp-*")) and not (tmp_path / "chapter_02.wav").exists()
    monkeypatch.setattr(book.audio, "save_audio_chunks", real)
    manifest, n = narrate(chat, tmp_path, settings)
    rendered = [r[0] for r in renders(tmp_path)]
    assert len(rendered) == len(set(rendered)) == 9  # nothing finished was rendered twice
    assert n.state == "done" and len(manifest["chapters"]) == 3


def test_the_store_full_mid_book_keeps_what_was_committed(chat, settings, tmp_path, monkeypatch):
    real_put, real_commit = ProgressStore.put, ProgressStore._commit
    puts = []

    def put(self, rendered, run):
        puts.append(len(rendered))
        return real_put(self, rendered, run)

    def commit(self):
        if len(puts) == 2 and self._db.in_transaction:  # the second batch: the disk is full
            raise sqlite3.OperationalError("database or disk is full")
        return real_commit(self)

    monkeypatch.setattr(ProgressStore, "put", put)
    monkeypatch.setattr(ProgressStore, "_commit", commit)
    with pytest.raises(StoreError, match="cannot write the progress store: database or disk"):
        narrate(chat, tmp_path, settings)
    monkeypatch.undo()
    assert len(renders(tmp_path)) == puts[0] == 2  # the first batch, whole; not the second
    narrate(chat, tmp_path, settings)
    rendered = [r[0] for r in renders(tmp_path)]
    assert len(rendered) == len(set(rendered)) == 9


def test_unwritable_or_busy_folders(chat, settings, tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="cannot write in the output folder"):
        Narration(DOC, str(tmp_path / "file"), settings)
    real_open = open

    def read_only(path, mode="r", *a, **kw):
        if "w" in mode and ".probe" in str(path):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, mode, *a, **kw)

    monkeypatch.setattr(book, "open", read_only, raising=False)
    with pytest.raises(StoreError, match=r"out: cannot write in the output folder: Read-only"):
        Narration(DOC, str(tmp_path / "out"), settings)
    monkeypatch.undo()
    with Narration(DOC, str(tmp_path / "busy"), settings):
        with pytest.raises(StoreError, match="another narration is running in this folder"):
            Narration(DOC, str(tmp_path / "busy"), settings)


def test_cancel_keeps_what_is_done(chat, settings, tmp_path):
    from chattts.errors import NarrationCancelled

    with Narration(DOC, str(tmp_path), settings, WAV, batch=2) as n:

        def stop(p):
            if p.segments_done >= 2:
                n.cancel()

        with pytest.raises(NarrationCancelled):
            n.run(chat, stop)
        assert n.state == "cancelled"
    assert len(renders(tmp_path)) == 2
    manifest, n = narrate(chat, tmp_path, settings)
    assert n.state == "done" and len(renders(tmp_path)) == 9


@pytest.mark.parametrize("kind", ["md", "epub", "html"])
def test_markdown_epub_and_html_books(chat, settings, tmp_path, kind):
    from test_narrate_documents import HTML, MARKDOWN, make_epub

    from chattts.narrate.documents import load_document

    source = tmp_path / f"book.{kind}"
    if kind == "epub":
        make_epub(source)
    else:
        source.write_text(MARKDOWN if kind == "md" else HTML, encoding="utf-8")
    doc = load_document(str(source))
    manifest, _ = narrate(chat, tmp_path / "out", settings, doc=doc, output=OutputOptions())
    titles = {
        "md": ["Chapter One", "Chapter Two", "Chapter Three"],
        "epub": ["Chapter 1", "Chapter 2", "Chapter 3"],
        "html": ["Part & One", "Part Two", "Part Three"],
    }[kind]
    assert [c["title"] for c in manifest["chapters"]] == titles
    with av.open(str(tmp_path / "out" / "book.m4b")) as f:
        assert [m["metadata"]["title"] for m in f.chapters()] == titles
    for c, chapter in zip(manifest["chapters"], doc.chapters, strict=True):
        assert load_audio(tmp_path / "out" / c["file"]).size > 0
        caps = json.loads((tmp_path / "out" / c["captions"]).read_text(encoding="utf-8"))
        said = " ".join(x["text"] for x in caps["captions"])
        assert said.split() == " ".join(chapter.paragraphs).split()
        assert "alert" not in said and "never" not in said


def test_captions_formats_and_finishing_per_chapter_keep_exact_times(chat, settings, tmp_path):
    """Captions through chattts.captions (SRT here), finishing through assemble: a segment of
    n samples lasts round(n / tempo) in its chapter, the pauses are not stretched, and the
    cues, the chapter files and the manifest agree to the sample; changing the finishing or
    the caption format renders nothing again."""
    from chattts.audio.finish import Finish
    from chattts.captions import read_captions

    narrate(chat, tmp_path, settings)  # plain: json captions
    finish = Finish(tempo=1.25, gain=-3.0)
    out = OutputOptions(format="wav", book="m4b", captions="srt", finish=finish)
    manifest, n = narrate(chat, tmp_path, settings, output=out)
    assert n.progress.rendered_segments == 0  # finishing changes files, never segments
    assert manifest["captions"] == "srt" and manifest["finish"]["tempo"] == 1.25
    assert not list(tmp_path.glob("*.captions.json"))  # the other format's files are gone
    rate = manifest["sample_rate"]
    with ProgressStore(str(tmp_path)) as store:
        for c, segments in zip(manifest["chapters"], plan(DOC, settings), strict=True):
            assert c["captions"] == c["file"].replace(".wav", ".srt")
            speech = book.chapter_speech(store, segments, rate, finish)
            # the measured times of assemble, and the timeline computed from sample counts
            records = {s.id: store.segment(s.id) for s in segments}
            timed, length = book.timeline(segments, records, rate, finish)
            assert [(round(x.start * rate), round(x.end * rate)) for x in speech.segments] == [
                (t.start, t.end) for t in timed
            ]
            for s, t in zip(segments, timed, strict=True):
                assert t.end - t.start == round(records[s.id].samples / 1.25)
            wav = load_audio(tmp_path / c["file"])
            assert wav.size == speech.audio.size == length == c["samples"]
            np.testing.assert_allclose(wav, speech.audio, atol=1.0 / 32767)
            cues, _ = read_captions(tmp_path / c["captions"])
            assert [(q.start, q.end) for q in cues] == [
                (round(t.start / rate, 3), round(t.end / rate, 3)) for t in timed
            ]
            assert [" ".join(q.lines) for q in cues] == [s.text for s in segments]
    with av.open(str(tmp_path / "book.m4b")) as f:
        stream = f.streams.audio[0]
        assert stream.duration * stream.time_base * rate == manifest["samples"]
    # no finishing again: the first files come back, nothing is rendered
    plain, n = narrate(chat, tmp_path, settings, output=OutputOptions(format="wav", captions="vtt"))
    assert n.progress.rendered_segments == 0 and plain["samples"] > manifest["samples"]
    assert (tmp_path / plain["chapters"][0]["captions"]).read_text().startswith("WEBVTT")
