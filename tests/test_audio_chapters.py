"""chattts.audio.save_audio_chunks: a file written chunk by chunk, with chapter marks."""

from __future__ import annotations

import av
import numpy as np
import pytest

from chattts.audio import AudioError, ChapterMark, load_audio, save_audio, save_audio_chunks

RATE = 24000


def chunks() -> list[np.ndarray]:
    return [(0.2 * np.sin(np.arange(n) / 7)).astype(np.float32) for n in (12345, 30001, 7777)]


MARKS = [
    ChapterMark(0, 12345, "One"),
    ChapterMark(12345, 42346, "Two é"),
    ChapterMark(42346, 50123, "Three"),
]


@pytest.mark.parametrize("fmt, name", [("m4a", "b.m4b"), ("mp3", "b.mp3")])
def test_chapter_marks_read_back(tmp_path, fmt, name):
    path = tmp_path / name
    n = save_audio_chunks(path, iter(chunks()), RATE, fmt, chapters=MARKS, metadata={"title": "B"})
    assert n == 50123
    with av.open(str(path)) as f:
        found = f.chapters()
        assert f.metadata["title"] == "B"
        if fmt == "m4a":  # the movie time scale is the sample rate: exact to the sample
            s = f.streams.audio[0]
            assert s.duration * s.time_base * RATE == n
    assert [c["metadata"]["title"] for c in found] == ["One", "Two é", "Three"]
    starts = [float(c["start"] * c["time_base"]) for c in found]
    assert starts == pytest.approx([m.start / RATE for m in MARKS], abs=1e-3)
    if fmt == "m4a":
        assert [c["start"] * c["time_base"] * RATE for c in found] == [m.start for m in MARKS]


def test_same_file_as_the_whole_waveform(tmp_path):
    whole = np.concatenate(chunks())
    save_audio(tmp_path / "a.wav", whole, RATE)
    assert save_audio_chunks(tmp_path / "b.wav", chunks(), RATE) == whole.size
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
    save_audio_chunks(tmp_path / "c.flac", chunks(), RATE)
    # (FFmpeg rounds float to 16 bits on its own: one step apart at most)
    np.testing.assert_allclose(load_audio(tmp_path / "c.flac"), whole, atol=2 / 32768)


def test_chapters_refused_where_they_cannot_go(tmp_path):
    with pytest.raises(AudioError, match="wav files carry no chapters: use m4a, mp3"):
        save_audio_chunks(tmp_path / "a.wav", chunks(), RATE, chapters=MARKS)
    with pytest.raises(AudioError, match="chapter marks outside the 50123 samples written"):
        save_audio_chunks(tmp_path / "a.mp3", chunks(), RATE, chapters=[ChapterMark(0, 60000, "x")])
