"""The real normalisers (NeMo for English, WeTextProcessing for Chinese: the ``text`` extra).

They are built once per machine into the user cache (``~/.cache/chattts/text``, about a minute
the first time, under two seconds afterwards). Only platforms without their wheels skip.
"""

from __future__ import annotations

import platform
import re
import socket
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_text_normalizer import TAG, VALID, capture, named

from chattts.text import Normalizer, backends, chars

pytestmark = pytest.mark.skipif(
    not (sys.platform == "linux" and platform.machine() == "x86_64"),
    reason="pynini (NeMo, WeTextProcessing) has wheels for Linux x86_64 only",
)
DIGIT = re.compile(r"\d")
CJK = re.compile(r"[\u4e00-\u9fff]")


def _no_network(*args, **kwargs):
    raise AssertionError("a text normaliser tried to use the network")


@pytest.fixture(scope="session")
def real() -> Normalizer:
    """The built-in normalisers, imported and built (or loaded) with the network cut off."""
    n = Normalizer()
    with pytest.MonkeyPatch.context() as mp:
        for name in ("connect", "connect_ex", "sendto"):
            mp.setattr(socket.socket, name, _no_network)
        assert n.prepare() == {"en": True, "zh": True}, 'pip install ".[text]"'
        out = n("It costs $5 and I have 3 apples, 我有3个。")
        assert out == "It costs five dollars and I have three apples, 我有三个。"
    return n


def _words_kept(source: str, out: str, spoken: set[str]) -> None:
    """Every word of ``source`` (except those the normaliser speaks differently) is in ``out``,
    in order."""
    words = [w for w in re.findall(r"[A-Za-z]+", source) if w.lower() not in spoken]
    rest = out.lower()
    for w in words:
        at = rest.find(w.lower())
        assert at >= 0, f"{w!r} dropped: {out!r}"
        rest = rest[at + len(w) :]


def _hanzi_kept(source: str, out: str) -> None:
    """Every Chinese character of ``source`` is in ``out``, in order."""
    it = iter(out)
    assert all(c in it for c in CJK.findall(source)), f"{source!r} -> {out!r}"


ENGLISH = [
    ("I bought 3 apples and 12 pears.", ["three apples", "twelve pears"], set()),
    ("The rate rose by 2.5 points.", ["two point five"], set()),
    ("It costs $12.50 today.", ["twelve dollars fifty cents"], set()),
    ("We met on January 3, 2024.", ["third", "twenty twenty four"], set()),
    ("The train leaves at 10:30 pm.", ["ten thirty"], {"pm"}),
    ("Sales grew 25% this year.", ["twenty five percent"], set()),
    ("Call me at 555-123-4567 tonight.", ["five five five", "four five six seven"], set()),
    (
        "The box weighs 3 kg and is 12 km away.",
        ["three kilograms", "twelve kilometers"],
        {"kg", "km"},
    ),
    ("It was -5°C and 1,000,000 people came.", ["minus five", "one million"], {"c"}),
]


@pytest.mark.parametrize("text,expected,spoken", ENGLISH)
def test_english(real, text, expected, spoken):
    with capture() as log:
        out = real(text)
    assert not DIGIT.search(out), out
    for e in expected:
        assert e in out.lower(), out
    _words_kept(text, out, spoken)
    assert named(log.messages()) == set(), out  # nothing removed


CHINESE = [
    ("我有3个苹果和12个梨。", ["三个苹果", "十二个梨"]),
    ("利率上升了2.5个百分点。", ["二点五"]),
    ("这本书12.5元，约$2。", ["十二点五元", "二美元"]),
    ("会议在2024年1月3日举行。", ["二零二四年一月三日"]),
    ("火车10:30出发。", ["十点三十分"]),
    ("销售额增长了25%。", ["百分之二十五"]),
    ("请拨打13812345678。", ["幺三八幺二三四五六七八"]),
    ("这个箱子重3kg，距离12km。", ["三千克", "十二公里"]),
    ("气温-5℃，有1,000,000人参加。", ["负五摄氏度", "一百万"]),
    ("好啊，这儿有2个。", ["好啊", "这儿", "两个"]),  # interjections and erhua stay
]


@pytest.mark.parametrize("text,expected", CHINESE)
def test_chinese(real, text, expected):
    with capture() as log:
        out = real(text)
    assert not DIGIT.search(out), out
    for e in expected:
        assert e in out, out
    _hanzi_kept(text, out)
    assert named(log.messages()) == set(), out


@pytest.mark.parametrize(
    "text",
    [
        "[speed_5]I have 3 [uv_break] apples [laugh] and 4.5 pears.[uv_break]",
        "[speed_5]我有3个[uv_break]苹果[laugh]和4.5个梨。[uv_break]",
        "[laugh]$5[uv_break]25%[lbreak]",
    ],
)
def test_tags_survive_in_place(real, text):
    out = real(text)
    assert TAG.findall(out) == TAG.findall(text)
    before, after = TAG.split(text), TAG.split(out)
    for b, a in zip(before, after, strict=True):
        assert bool(b.strip()) == bool(a.strip())  # each stretch stays between the same tags
        assert not DIGIT.search(a)


def test_mixed_english_majority(real):
    text = "I have 3 apples and 我有3个苹果 today."
    out = real(text)
    assert "three apples" in out and "我有三个苹果" in out and not DIGIT.search(out)
    _words_kept(text, out, set())
    _hanzi_kept(text, out)


def test_mixed_chinese_majority(real):
    text = "我今天买了3本书, then paid $20 for them，在2024年。"
    out = real(text)
    assert "三本书" in out and "二十美元" in out and "二零二四年" in out
    assert not DIGIT.search(out)
    _words_kept(text, out, set())
    _hanzi_kept(text, out)


def test_grammars_cached_in_user_dir(real):
    cache = real.normalizers["en"].cache_dir
    assert cache == backends.default_cache_dir()
    assert list(cache.glob("nemo_text_processing-*/en_cased/.complete"))


TEXTS = st.lists(
    st.one_of(
        st.text(max_size=10),
        st.sampled_from(
            ["[uv_break]", "[laugh]", "3", "12.50", "$5", "25%", "10:30", "2024-01-03"]
            + ["你好", "苹果", "apple", " ", "。", ", ", "-", "啊", "儿", "😀", "é"]
        ),
    ),
    max_size=8,
).map("".join)


class Recorder:
    """Wraps a real normaliser and remembers what went in and out."""

    def __init__(self, fn) -> None:
        self.fn, self.seen_in, self.seen_out = fn, set(), set()

    def __call__(self, s: str) -> str:
        out = self.fn(s)
        self.seen_in.update(s)
        self.seen_out.update(out)
        return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TEXTS, st.sampled_from([None, "en", "zh"]))
def test_property_real(real, text, lang):
    n = Normalizer(builtin_normalizers=False)
    rec = {k: Recorder(real.normalizers[k]) for k in ("en", "zh")}
    for k, r in rec.items():
        assert n.register(k, r)
        r.seen_in.clear()
        r.seen_out.clear()
    with capture() as log:
        out = n(text, lang=lang)  # never raises
    plain = TAG.sub("", out)
    assert VALID.fullmatch(plain), out
    warned = named(log.messages())
    assert not warned & set(plain)
    consumed = set().union(*(r.seen_in for r in rec.values()))
    produced = set().union(*(r.seen_out for r in rec.values()))
    mapped = set(chars.INVALID_CHARACTER_MAP) | set(chars.ZH_HALFWIDTH_TO_FULLWIDTH)
    # a text left with nothing to speak warns nothing: the request path refuses it instead
    gone = (set(text) | produced) - set(out) - warned if chars.has_speech(out) else set()
    for c in gone:
        # gone without a word only if a normaliser spoke it, a table mapped it, it was folded
        # or it is punctuation the model reads as nothing
        assert (
            c.isspace()
            or not chars.is_content(c)
            or c in mapped
            or chars.fold(c, []) not in ("", c)
            or (c in consumed and c not in produced)
        ), repr(c)
