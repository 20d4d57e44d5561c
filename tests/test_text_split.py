"""Sentence splitting: the reference rule and the length limit of ``split_text``."""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chattts.text import DEFAULT_MAX_SPLIT_CHARS, split_sentences, split_text, text_length

TAG = re.compile(r"\[[\w_]+\]")
TAGS = ["[uv_break]", "[laugh]", "[speed_5]", "[lbreak]"]


def _paragraph(n_chars: int, seed: int, chinese: bool) -> str:
    """A paragraph without full stops: clauses of words or characters, commas, tags."""
    rng = random.Random(seed)
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "3.5", "1,000", "10:30"]
    hanzi = "我们今天去公园散步天气很好风也不大孩子们在草地上玩"
    out: list[str] = []
    while sum(map(len, out)) < n_chars:
        if chinese:
            clause = "".join(rng.choice(hanzi) for _ in range(rng.randint(5, 40)))
        else:
            clause = " ".join(rng.choice(words) for _ in range(rng.randint(2, 30)))
        if rng.random() < 0.3:
            at = rng.randint(0, len(clause))
            clause = clause[:at] + rng.choice(TAGS) + clause[at:]
        out.append(clause + ("，" if chinese else ", "))
    return "".join(out)


def test_split_sentences_is_the_reference_rule():
    assert split_sentences("第一句。第二句。") == ["第一句。", "第二句。"]
    assert split_sentences("One. Two. Three") == ["One. ", "Two. ", "Three"]
    assert split_sentences("a. b\nc。d\n\n") == ["a. b", "c。d"]
    assert split_sentences("3.5 is not split") == ["3.5 is not split"]


@pytest.mark.parametrize("chinese", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_long_paragraph_without_full_stops(chinese, seed):
    text = _paragraph(2000, seed, chinese)
    assert "。" not in text and ". " not in text
    pieces = split_text(text)
    assert len(pieces) >= 2000 // DEFAULT_MAX_SPLIT_CHARS
    assert all(text_length(p.strip()) <= DEFAULT_MAX_SPLIT_CHARS for p in pieces)
    assert "".join(pieces) == text  # nothing lost, nothing added
    assert [t for p in pieces for t in TAG.findall(p)] == TAG.findall(text)  # tags intact
    # cut after a comma or a space: never inside a word or a number such as 3.5 / 1,000
    for p in pieces[:-1]:
        assert p.endswith(("，", " ")), p[-20:]


def test_prefers_sentence_end_then_clause_then_space():
    head = "x" * 70
    assert split_text(head + "! and then, some more words here", 80)[0] == head + "! "
    assert split_text(head + ", and then some more words here", 80)[0] == head + ", "
    assert split_text(head + " and then some more words here", 80)[0] == head + " and then "
    # a sentence end early in the window loses to a clause boundary late in it
    text = "Yes! " + "y" * 60 + ", and " + "z" * 40
    assert split_text(text, 80)[0] == "Yes! " + "y" * 60 + ", "


def test_chinese_boundaries():
    text = "我们" * 30 + "；" + "他们" * 30 + "，" + "你们" * 30
    pieces = split_text(text, 70)
    assert pieces[0] == "我们" * 30 + "；"
    assert all(text_length(p) <= 70 for p in pieces)
    assert "".join(pieces) == text


def test_numbers_are_not_cut():
    text = ("3.5 1,000 10:30 " * 20).strip()
    for p in split_text(text, 25):
        assert re.fullmatch(r"(\S+ )*\S+ ?", p), p  # whole tokens only


def test_hard_cut_without_boundaries_never_splits_a_tag():
    text = ("啊" * 9 + "[uv_break]") * 30
    pieces = split_text(text, 16)
    assert "".join(pieces) == text
    assert all(text_length(p) <= 16 for p in pieces)
    assert all(TAG.sub("", p).count("[") == 0 for p in pieces)
    assert sum(p.count("[uv_break]") for p in pieces) == 30


def test_short_text_and_limits():
    assert split_text("Hello there.") == ["Hello there."]
    assert split_text("") == []
    assert split_text("  lead and trail  ", 5) == ["  lead ", "and ", "trail  "]
    with pytest.raises(ValueError):
        split_text("abc", 0)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(st.text(max_size=8), st.sampled_from(TAGS + ["，", ", ", "! ", " ", "。"])),
        max_size=40,
    ).map("".join),
    st.integers(min_value=1, max_value=60),
)
def test_split_property(text, limit):
    pieces = split_text(text, limit)
    assert all(p.strip() for p in pieces)
    assert all(text_length(p.strip()) <= limit for p in pieces)
    if "\n" not in text:
        assert "".join(pieces) == "".join(split_sentences(text))
    assert sum(len(TAG.findall(p)) for p in pieces) == sum(
        len(TAG.findall(s)) for s in split_sentences(text)
    )
