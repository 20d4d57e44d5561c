"""Captions: clause splitting before synthesis, cue layout from measured segments, and the
SRT / WebVTT / JSON files written and read back (chattts/captions/)."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest

from chattts.audio import Bookmark, Piece, Segment, Speech, assemble
from chattts.captions import (
    Cue,
    caption_pieces,
    captions_text,
    cues,
    layout,
    parse_captions,
    read_captions,
    write_captions,
)
from chattts.captions.cues import width
from chattts.errors import CaptionError, UsageError

RATE = 24000

ENGLISH = [
    "The morning train was late again, and nobody on the platform seemed surprised.",
    "Maria checked her phone.",
    "Three messages from her brother, one from the bank, and a reminder about the dentist "
    "that she had already cancelled twice this month without telling anyone at all.",
    "She sighed.",
    "When the train finally arrived, it was packed; people pressed against the doors, "
    "holding coffee cups above their heads like trophies from a long and difficult war.",
    "A child was singing.",
    "Nobody minded.",
    "At the third stop a man with a violin case got on, looked around, and decided to stand.",
    "The lights flickered: once, twice, then steadily.",
    "Maria closed her eyes and counted the stations — seven more — before she had to change.",
    "Her office was on the fourteenth floor of a building that had been new in 1974.",
    "The elevator, as usual, was out of order.",
    "She climbed.",
]
CHINESE = [
    "今天早上的火车又晚点了，站台上的人们似乎一点也不惊讶。",
    "玛丽亚看了看手机，有三条来自哥哥的消息，一条来自银行的通知，还有一个牙医的提醒，"
    "她这个月已经取消了两次预约，却没有告诉任何人，她自己也说不清楚为什么总是忘记这些事情。",
    "她叹了口气。",
    "火车终于到站了，车厢里挤满了人；大家把咖啡杯举过头顶，像是从一场漫长的战争中带回的战利品。",
    "一个孩子在唱歌。",
    "没有人介意。",
    "第三站上来了一个拿着小提琴盒的男人。",
]
TWENTY = ENGLISH + CHINESE
assert len(TWENTY) == 20


def words(text: str) -> str:
    """The text without whitespace: what must survive splitting and line breaking."""
    return re.sub(r"\s+", "", text)


def check_cue_rules(cue_list: list[Cue], duration: float) -> None:
    last_end = 0.0
    for cue in cue_list:
        assert 1 <= len(cue.lines) <= 2, cue
        assert all(0 < len(line) <= width(line) <= 42 for line in cue.lines), cue
        assert all(line == line.strip() for line in cue.lines), cue
        assert last_end <= cue.start < cue.end <= duration, cue
        last_end = cue.end


def spoken(texts: list[str], seconds_per_char: float = 0.06) -> Speech:
    """A Speech whose pieces are noise as long as their text would take to say."""
    rng = np.random.default_rng(0)
    pieces = [
        Piece((0.1 * rng.standard_normal(int(len(t) * seconds_per_char * RATE))).astype("f4"), t)
        for t in texts
    ]
    return assemble(pieces, RATE, gap=0.2)


# --- caption_pieces ------------------------------------------------------------------------


def test_caption_pieces_split_at_clauses_first():
    text = ENGLISH[4]  # 162 characters: clauses end with "," and ";"
    pieces = caption_pieces(text)
    assert len(pieces) >= 2 and all(len(p) <= 84 and len(layout(p)) <= 2 for p in pieces)
    assert all(p[-1] in ",;." for p in pieces)  # every cut at a clause end
    assert words("".join(pieces)) == words(text)


def test_caption_pieces_fall_back_to_words_and_keep_numbers_whole():
    text = "The value 3.14 " + " ".join(["word"] * 40)
    pieces = caption_pieces(text, 60)
    assert all(len(p) <= 60 for p in pieces) and words("".join(pieces)) == words(text)
    assert "3.14" in pieces[0]
    assert all(not p.startswith(" ") and not p.endswith(" ") for p in pieces)
    assert max(map(len, pieces)) - min(map(len, pieces)) <= 10  # even lengths, not 60 + rest


def test_caption_pieces_split_chinese_at_its_punctuation():
    text = CHINESE[1]
    pieces = caption_pieces(text, 40)
    assert len(pieces) >= 2 and all(width(p) <= 40 for p in pieces)
    assert "".join(pieces) == text  # no spaces invented between CJK pieces
    assert all(p[-1] in "，。；" for p in pieces)


def test_caption_pieces_cut_a_word_longer_than_the_limit():
    pieces = caption_pieces("see https://example.com/" + "a" * 150, 50)
    assert all(len(p) <= 50 for p in pieces) and len(pieces) == 4
    assert pieces[0].startswith("see https://")


def test_short_text_is_one_piece_and_empty_text_none():
    assert caption_pieces("  Hello   there. ") == ["Hello there."]
    assert caption_pieces("   ") == []
    with pytest.raises(Exception, match="max_chars"):
        caption_pieces("text", 1)


# --- layout and cues -----------------------------------------------------------------------


def test_layout_balances_two_lines_at_word_boundaries():
    lines = layout("The quick brown fox jumps over the lazy dog and keeps running far away")
    assert lines == ["The quick brown fox jumps over the", "lazy dog and keeps running far away"]
    assert layout("Short line.") == ["Short line."]


def test_width_counts_wide_characters_twice():
    assert width("abc") == 3 and width("你好，") == 6 and width("a你") == 3


def test_layout_breaks_cjk_anywhere_but_not_before_punctuation():
    lines = layout("我们去公园散步吧，然后我们去吃饭，吃完饭以后再去看一场电影吧。", 32)
    assert len(lines) == 2 and all(width(line) <= 32 for line in lines)  # 16 wide characters
    assert "".join(lines) == "我们去公园散步吧，然后我们去吃饭，吃完饭以后再去看一场电影吧。"
    assert all(line[0] not in "，。" for line in lines)


def test_cues_of_twenty_sentences_follow_subtitle_habits():
    """Each sentence split with caption_pieces before 'synthesis', one measured segment per
    piece: 2 lines of 42 characters, in order, no overlaps, inside the audio, all text kept,
    and every time a segment's own."""
    texts = [piece for sentence in TWENTY for piece in caption_pieces(sentence)]
    speech = spoken(texts)
    cue_list = speech.captions()
    check_cue_rules(cue_list, speech.duration)
    assert len(cue_list) == len(texts) > 20
    assert words("".join(c.text for c in cue_list)) == words("".join(TWENTY))
    assert [(c.start, c.end) for c in cue_list] == [(s.start, s.end) for s in speech.segments]


def test_cues_refuse_segments_out_of_order_or_outside_the_audio():
    with pytest.raises(CaptionError, match="before the one before it ends"):
        cues([Segment(0, 2, "a"), Segment(1, 3, "b")])
    with pytest.raises(CaptionError, match="after the audio"):
        cues([Segment(0, 2, "a")], duration=1.5)


def test_a_segment_too_long_for_a_cue_keeps_its_text_and_time(caplog):
    long = " ".join(["word"] * 30)
    (cue,) = cues([Segment(1.0, 4.0, long, "alice")])
    assert len(cue.lines) > 2 and words(cue.text) == words(long)
    assert (cue.start, cue.end, cue.voice) == (1.0, 4.0, "alice")
    assert "caption_pieces" in caplog.text


def test_empty_segments_get_no_cue():
    assert cues([Segment(0, 1, "  "), Segment(1, 1, "instant")]) == []


# --- files ---------------------------------------------------------------------------------

SAMPLE = [
    Cue(0.0, 1.2346, ("Hello & welcome,", "<everyone> --> here"), "Alice Smith"),
    Cue(1.5, 3.0, ("你好，世界。",), None),
    Cue(3.0, 3600.5, ("One {brace} line",), "Bob"),
]


@pytest.mark.parametrize("fmt", ["srt", "vtt", "json"])
def test_files_are_written_and_read_back_equal(tmp_path, fmt):
    path = tmp_path / f"captions.{fmt}"
    write_captions(path, SAMPLE)
    back, _ = read_captions(path)
    assert len(back) == len(SAMPLE)
    for got, want in zip(back, SAMPLE, strict=True):
        assert got.lines == want.lines
        assert abs(got.start - want.start) <= 0.0005 and abs(got.end - want.end) <= 0.0005
        assert got.voice == (None if fmt == "srt" else want.voice)


@pytest.mark.parametrize("fmt", ["srt", "vtt", "json"])
def test_no_cues_make_an_empty_file_that_reads_back_empty(fmt):
    assert parse_captions(captions_text([], fmt), fmt) == ([], [])


def test_json_holds_captions_and_marks_in_seconds(tmp_path):
    speech = Speech(
        np.zeros(RATE * 4, np.float32),
        RATE,
        (Segment(0.5, 1.75, "Hello there."),),
        (),
    )
    marks = [type("M", (), {"name": "intro", "time": 0.5})()]
    body = json.loads(captions_text(speech.captions(), "json", marks))
    assert body == {
        "captions": [{"start": 0.5, "end": 1.75, "text": "Hello there."}],
        "marks": [{"name": "intro", "time": 0.5}],
    }
    cue_list, mark_list = parse_captions(json.dumps(body), "json")
    assert cue_list == speech.captions() and mark_list == [("intro", 0.5)]


def test_speech_saves_its_captions_with_marks(tmp_path):
    speech = assemble([Bookmark("one"), (np.ones(RATE, np.float32) * 0.1, "One.")], RATE)
    speech.save_captions(tmp_path / "c.json")
    cue_list, marks = read_captions(tmp_path / "c.json")
    assert cue_list[0].text == "One." and cue_list[0].end == 1.0 and marks == [("one", 0.0)]


def test_vtt_is_valid_webvtt():
    text = captions_text(SAMPLE, "vtt")
    assert text.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.235\n")
    assert (
        "<v Alice Smith>Hello &amp; welcome," in text and "&lt;everyone&gt; --&gt; here</v>" in text
    )
    assert "01:00:00.500" in text


def test_srt_numbers_cues_and_uses_commas():
    text = captions_text(SAMPLE, "srt")
    assert text.startswith(
        "1\n00:00:00,000 --> 00:00:01,235\nHello & welcome,\n‹everyone› --› here\n"
    )
    assert "\n\n3\n00:00:03,000 --> 01:00:00,500\n" in text


def test_file_objects_text_and_binary():
    text_file, binary_file = io.StringIO(), io.BytesIO()
    write_captions(text_file, SAMPLE, "vtt")
    write_captions(binary_file, SAMPLE, "vtt")
    assert binary_file.getvalue().decode("utf-8") == text_file.getvalue()
    assert read_captions(io.StringIO(text_file.getvalue()), "vtt")[0][1].lines == ("你好，世界。",)


def test_an_unknown_suffix_is_refused_naming_the_suffixes(tmp_path):
    with pytest.raises(CaptionError) as e:
        write_captions(tmp_path / "captions.txt", SAMPLE)
    assert isinstance(e.value, UsageError)
    assert all(s in str(e.value) for s in (".srt", ".vtt", ".json"))
    assert not (tmp_path / "captions.txt").exists()
    with pytest.raises(CaptionError, match="unknown caption format"):
        captions_text(SAMPLE, "ass")


def test_a_failed_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "c.srt"
    path.write_text("old", encoding="utf-8")
    with pytest.raises(AttributeError):
        write_captions(path, [object()])
    assert path.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["c.srt"]


def test_malformed_files_raise_caption_errors():
    with pytest.raises(CaptionError):
        parse_captions('{"captions": [{"start": 1}]}', "json")
    with pytest.raises(CaptionError):
        parse_captions("not captions at all", "vtt")
