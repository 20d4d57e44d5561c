"""The normaliser's own steps, with hand-made normalisers (no NeMo / WeTextProcessing needed)."""

from __future__ import annotations

import json
import logging
import re
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chattts.errors import AssetNotFoundError
from chattts.text import Normalizer, TextError, backends, chars, default_cache_dir, detect_language

SPEC_MAP = chars.INVALID_CHARACTER_MAP
VALID = re.compile(r"[\u4e00-\u9fffA-Za-z，。、,\. ]*")
TAG = re.compile(r"\[[\w_]+\]")
CODEPOINT = re.compile(r"\(U\+([0-9A-F]{4,6})\)")


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, level: int = logging.WARNING) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno == level]


@contextmanager
def capture():
    """Records of the "chattts" logger (usable inside hypothesis tests, unlike caplog)."""
    log = logging.getLogger("chattts")
    handler, level = Capture(), log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


def named(messages: list[str]) -> set[str]:
    """Characters named in the "removed ..." warnings."""
    return {
        chr(int(h, 16)) for m in messages if m.startswith("removed") for h in CODEPOINT.findall(m)
    }


def bare() -> Normalizer:
    return Normalizer(builtin_normalizers=False)


def digits_to_words(text: str) -> str:
    words = "zero one two three four five six seven eight nine".split()
    return re.sub(r"\d", lambda m: f" {words[int(m.group())]} ", text)


def test_construction_is_cheap_and_registers_en_zh():
    n = Normalizer()
    assert set(n.normalizers) == {"en", "zh"}
    assert all(isinstance(f, backends.BuiltinNormalizer) for f in n.normalizers.values())
    # shared per process: a second Chat does not build the grammars again
    assert Normalizer().normalizers["en"] is n.normalizers["en"]


def test_language_detection():
    assert detect_language("我有三个苹果 apple") == "zh"
    assert detect_language("I have 3 apples 苹果") == "en"
    assert detect_language("[laugh][laugh][laugh] 你好") == "zh"  # tags are not words
    assert detect_language("") == "en"


def test_reference_steps_without_normalisers():
    n = bare()
    with capture() as log:
        assert n("Hello: world! (yes) a-b") == "Hello, world. ,yes, a,b"
        assert n("你好：世界！（是）") == "你好，世界。，是，"
        assert n("你好!世界?", lang="zh") == "你好。世界"  # full width, then the map
        assert n("Hello!", lang="en") == "Hello."
    assert named(log.messages()) == set()  # "？" is punctuation: dropped quietly


def test_tags_kept_verbatim_and_in_place():
    n = bare()
    n.register("en", digits_to_words)
    text = "[speed_5]I have 3[uv_break]apples [laugh] and 4 pears.[uv_break]"
    out = n(text)
    assert TAG.findall(out) == TAG.findall(text)
    parts = TAG.split(out)
    assert "three" in parts[1] and "four" in parts[3] and "apples" in parts[2]
    assert not re.search(r"\d", TAG.sub("", out))


def test_registered_normaliser_runs_between_tags_only():
    seen: list[str] = []
    n = bare()
    assert n.register("en", lambda s: seen.append(s) or s.upper())
    seen.clear()
    assert n("ab [laugh] cd [uv_break]") == "AB [laugh] CD [uv_break]"
    assert seen == ["ab", "cd"]  # edge spaces kept outside, tags never passed


def test_register_refuses_bad_and_duplicate_normalisers(caplog):
    n = bare()
    assert not n.register("en", lambda s: 1 / 0)
    assert not n.register("en", lambda s: None)
    assert "en" not in n.normalizers
    assert n.register("en", str.upper)
    assert not n.register("en", str.lower)  # already registered by hand
    assert n.normalizers["en"] is str.upper
    n.unregister("en")
    assert n.register("en", str.lower)
    # a built-in normaliser is replaced, as the reference's users do register("en", fn)
    m = Normalizer()
    assert m.register("zh", str.strip) and m.normalizers["zh"] is str.strip
    m.unregister("en")
    assert "en" not in m.normalizers
    m.unregister("fr")  # absent: no error


def test_failing_normaliser_keeps_text_and_warns():
    n = bare()
    calls = []

    def flaky(s: str) -> str:
        calls.append(s)
        if len(calls) > 1:
            raise RuntimeError("boom")
        return s

    assert n.register("en", flaky)
    with capture() as log:
        assert n("abc def") == "abc def"
    assert any("failed" in m for m in log.messages())


def test_removed_characters_named_once_per_call():
    n = bare()
    with capture() as log:
        out = n("a😀b😀c\x00 d#e €5")
    assert out == "abc de "
    warnings = log.messages()
    assert len(warnings) == 1
    assert named(warnings) == {"😀", "\x00", "#", "€", "5"}
    assert "pip install" in warnings[0]  # digits removed: says how to get them spoken
    with capture() as log:
        assert n("clean text, nothing removed.") == "clean text, nothing removed."
    assert log.messages() == []


def test_folding_keeps_letters_and_digits():
    n = bare()
    n.register("en", digits_to_words)
    with capture() as log:
        out = n("café naïve Straße Ｈｅｌｌｏ ２０ ٣ ﬁne")
    assert out.split() == "cafe naive Strasse Hello two zero three fine".split()
    assert log.messages() == []
    # whitespace of any kind separates words instead of vanishing
    assert n("one\ntwo\tthree\u00a0four", do_text_normalization=False) == "one two three four"


def test_mixed_english_text_sends_chinese_stretches_to_zh():
    n = bare()
    n.register("en", lambda s: s.replace("3", "three"))
    n.register("zh", lambda s: s.replace("3", "三"))
    assert (
        n("I have 3 apples and 我有3个苹果 today.") == "I have three apples and 我有三个苹果 today."
    )
    # Chinese-majority text goes to the Chinese normaliser whole
    assert n("我有3个苹果和3个梨 and 3 pears") == "我有三个苹果和三个梨 and 三 pears"


def test_missing_package_logs_one_line_and_keeps_working(monkeypatch):
    real_find_spec = backends.importlib.util.find_spec
    monkeypatch.setattr(
        backends.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "nemo_text_processing" else real_find_spec(name, *a),
    )
    lazy = backends.BuiltinNormalizer("en", None)  # a fresh, unshared one
    n = bare()
    n.normalizers["en"] = lazy
    with capture() as log:
        assert n("It costs 5 dollars.") == "It costs  dollars."
        assert n("And 6 more.") == "And  more."
    lines = [m for m in log.messages() if "not installed" in m]
    assert len(lines) == 1 and "nemo_text_processing" in lines[0]
    assert 'pip install "chattts[text]"' in lines[0]
    assert lazy.failed and not n.prepare(["en"])["en"]


def test_cache_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "chattts" / "text"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert default_cache_dir() == Path.home() / ".cache" / "chattts" / "text"
    n = Normalizer(cache_dir=tmp_path / "c")
    assert n.normalizers["en"].cache_dir == tmp_path / "c"


# -- homophones ---------------------------------------------------------------------------


def _table(tmp_path, table) -> str:
    path = tmp_path / "homophones.json"
    path.write_text(json.dumps(table, ensure_ascii=False), encoding="utf-8")
    return str(path)


def test_homophones_replace_outside_tags(tmp_path):
    n = Normalizer(_table(tmp_path, {"唔": "无", "係": "系", "x": "y"}), builtin_normalizers=False)
    with capture() as log:
        out = n("唔係[x_1]x唔")
    assert out == "无系[x_1]y无"
    assert any("唔->无" in m for m in log.messages(logging.INFO))
    assert n("唔係", do_homophone_replacement=False) == "唔係"


def test_homophones_load_replaces_table_and_validates(tmp_path):
    n = bare()
    with capture() as log:
        assert n("唔") == "唔"
        n("唔")
    assert sum("no homophone table" in m for m in log.messages(logging.DEBUG)) == 1
    assert n.load_homophones(_table(tmp_path, {"唔": "无"})) == 1
    assert n("唔") == "无"
    with pytest.raises(TextError):
        n.load_homophones(_table(tmp_path, {"唔": "无无"}))
    with pytest.raises(TextError):
        n.load_homophones(_table(tmp_path, ["唔"]))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(TextError):
        n.load_homophones(bad)
    with pytest.raises(AssetNotFoundError):
        n.load_homophones(tmp_path / "missing.json")
    assert n("唔") == "无"  # a failed load keeps the previous table


def test_homophone_to_invalid_character_is_removed_and_named(tmp_path):
    n = Normalizer(_table(tmp_path, {"唔": "😀"}), builtin_normalizers=False)
    with capture() as log:
        assert n("唔好") == "好"
    assert named(log.messages()) == {"😀"}


# -- property: arbitrary text, normalisation off (the reference steps, exact oracle) -------

TEXTS = st.lists(
    st.one_of(
        st.text(max_size=10),
        st.sampled_from(["[uv_break]", "[laugh]", "[speed_5]", "3.5%", "你好", "：", "!", " "]),
    ),
    max_size=8,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(TEXTS, st.booleans())
def test_property_reference_steps(text, zh):
    n = bare()
    with capture() as log:
        out = n(text, do_text_normalization=False, lang="zh" if zh else None)
    assert VALID.fullmatch(TAG.sub("", out))
    plain = "".join(TAG.split(chars.spaces(text)))
    removed = {c for c in plain if c not in SPEC_MAP and not VALID.fullmatch(c)}
    expected = {c for c in removed if chars.is_content(c)}  # punctuation goes quietly
    if not chars.has_speech(out):  # nothing left: the request path refuses the text instead
        expected = set()
    assert named(log.messages()) == expected
    assert len(log.messages()) == (1 if expected else 0)


# -- property: arbitrary text through hand-made normalisers --------------------------------


@settings(max_examples=300, deadline=None)
@given(TEXTS, st.sampled_from([None, "en", "zh"]))
def test_property_with_normalisers(text, lang):
    n = bare()
    n.register("en", digits_to_words)
    n.register("zh", lambda s: s.replace("%", "百分之"))
    with capture() as log:
        out = n(text, lang=lang)
    assert VALID.fullmatch(TAG.sub("", out))
    assert not re.search(r"\d", TAG.sub("", out))
    warned = named(log.messages())
    lost = set(text) - set(out) if chars.has_speech(out) else set()  # else: EmptyInputError
    spoken = set("0123456789%")  # what these normalisers verbalise
    for c in lost - warned - spoken:
        assert (
            c.isspace()
            or not chars.is_content(c)  # punctuation the model reads as nothing
            or c in SPEC_MAP
            or c in chars.ZH_HALFWIDTH_TO_FULLWIDTH
            or (chars.fold(c, []) not in ("", c))
        ), repr(c)


# ---- long input: bounded pieces, one warning on failure ---------------------------------


def _bounded(limit: int, calls: list):
    """A normaliser that, like NeMo, cannot take long input (raises past ``limit``)."""

    def fn(text: str) -> str:
        calls.append(len(text))
        if len(text) > limit:
            raise RuntimeError(f"input of {len(text)} characters")
        return text.upper() if text.isascii() else text

    return fn


@pytest.mark.parametrize(
    "text",
    [
        "word " * 40_000,  # 200,000 characters, no sentence end
        ("a sentence here. " * 12_000)[:200_000],
        "x" * 200_000,  # no boundary at all
        "测试文字" * 50_000,  # Chinese, no sentence end
        ("中文句子。" * 40_000),
    ],
    ids=["en-words", "en-sentences", "en-unbroken", "zh-no-end", "zh-sentences"],
)
def test_long_text_reaches_the_normaliser_in_bounded_pieces(text, caplog):
    from chattts.text.normalizer import MAX_NORMALIZER_CHARS

    calls: list[int] = []
    n = Normalizer(builtin_normalizers=False)
    for lang in ("en", "zh"):
        assert n.register(lang, _bounded(MAX_NORMALIZER_CHARS, calls))
    calls.clear()
    with caplog.at_level(logging.WARNING, logger="chattts"):
        out = n(text)
    assert calls and max(calls) <= MAX_NORMALIZER_CHARS
    assert "failed" not in caplog.text
    if text.isascii():
        assert out.strip() == text.upper().strip()
    else:
        assert len(out) >= len(text) * 0.9  # full-width punctuation, nothing lost


def test_a_failing_piece_keeps_the_builtin_rules_with_one_warning(caplog):
    n = Normalizer(builtin_normalizers=False)

    def flaky(text: str) -> str:
        if "boom" in text:
            raise RuntimeError("cannot")
        return text.replace("one", "ONE")

    assert n.register("en", flaky)
    text = ("one boom two. " * 100) + ("one fine. " * 100)
    with caplog.at_level(logging.WARNING, logger="chattts"):
        out = n(text)
    warnings = [r for r in caplog.records if "failed on" in r.getMessage()]
    assert len(warnings) == 1 and "piece(s)" in warnings[0].getMessage()
    assert "one boom" in out and "ONE fine" in out  # failed pieces as they were, others normalised
