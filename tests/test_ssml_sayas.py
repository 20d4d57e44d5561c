"""``<say-as>`` in SSML documents: each reading in English and Chinese, captions, the
``normalize`` flag, errors; and (e2e) the words through the real text normalisers."""

from __future__ import annotations

import platform
import sys
import warnings

import pytest

from chattts import ssml
from chattts.ssml import Speak, SsmlError, words


def say(interpret_as: str, content: str, lang: str = "en", fmt: str | None = None) -> Speak:
    """The one item of a document holding only ``<say-as>`` (language set by xml:lang)."""
    f = f" format='{fmt}'" if fmt else ""
    element = f"<say-as interpret-as='{interpret_as}'{f}>{content}</say-as>"
    doc = f"<speak xml:lang='{lang}'>{element}</speak>"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (item,) = ssml.parse(doc).items
    return item


def text(interpret_as: str, content: str, lang: str = "en", fmt: str | None = None) -> str:
    return say(interpret_as, content, lang, fmt).text


# ---- number words --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n,en,zh",
    [
        (0, "zero", "零"),
        (7, "seven", "七"),
        (10, "ten", "十"),
        (15, "fifteen", "十五"),
        (20, "twenty", "二十"),
        (21, "twenty one", "二十一"),
        (101, "one hundred one", "一百零一"),
        (110, "one hundred ten", "一百一十"),
        (1005, "one thousand five", "一千零五"),
        (1234, "one thousand two hundred thirty four", "一千二百三十四"),
        (10010, "ten thousand ten", "一万零一十"),
        (100001, "one hundred thousand one", "十万零一"),
        (101000000, "one hundred one million", "一亿零一百万"),
        (100010000, "one hundred million ten thousand", "一亿零一万"),
        (2_000_000_000, "two billion", "二十亿"),
    ],
)
def test_cardinal_words(n, en, zh):
    assert words.en_cardinal(n) == en
    assert words.zh_cardinal(n) == zh


@pytest.mark.parametrize(
    "n,ordinal",
    [
        (1, "first"),
        (2, "second"),
        (3, "third"),
        (5, "fifth"),
        (8, "eighth"),
        (9, "ninth"),
        (12, "twelfth"),
        (20, "twentieth"),
        (21, "twenty first"),
        (100, "one hundredth"),
    ],
)
def test_ordinal_words(n, ordinal):
    assert words.en_ordinal(n) == ordinal


@pytest.mark.parametrize(
    "year,spoken",
    [
        (999, "nine hundred ninety nine"),
        (1066, "ten sixty six"),
        (1900, "nineteen hundred"),
        (1905, "nineteen oh five"),
        (1999, "nineteen ninety nine"),
        (2000, "two thousand"),
        (2007, "two thousand seven"),
        (2010, "twenty ten"),
        (2024, "twenty twenty four"),
    ],
)
def test_years(year, spoken):
    assert words.en_year(year) == spoken


def test_numbers_too_long_to_read():
    with pytest.raises(ValueError):
        words.en_cardinal(10**words.MAX_INTEGER_DIGITS)
    assert words.en_cardinal(10**words.MAX_INTEGER_DIGITS - 1).startswith("nine hundred")


# ---- readings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "interpret_as,content,en,zh",
    [
        ("characters", "IBM", "I B M", "I B M"),
        ("spell-out", "abc", "A B C", "A B C"),
        ("verbatim", "a1-b", "A one dash B", "A 一 杠 B"),
        ("characters", "你好", "你 好", "你 好"),
        ("cardinal", "1,234", "one thousand two hundred thirty four", "一千二百三十四"),
        ("cardinal", "-3.5", "minus three point five", "负三点五"),
        ("number", "2024", "two thousand twenty four", "二千零二十四"),
        ("cardinal", "１２", "twelve", "十二"),  # full-width digits
        ("ordinal", "3", "third", "第三"),
        ("ordinal", "21st", "twenty first", "第二十一"),
        ("ordinal", "第3", "third", "第三"),
        ("digits", "2024", "two zero two four", "二零二四"),
        ("digits", "12-34", "one two three four", "一二三四"),
        ("time", "14:30", "fourteen thirty", "十四点三十分"),
        ("time", "9:00", "nine oclock", "九点"),
        ("time", "0:00", "midnight", "零点"),
        ("time", "2:05 pm", "two oh five PM", "下午两点零五分"),
        ("time", "11:00 A.M.", "eleven AM", "上午十一点"),
        ("time", "14:30:15", "fourteen thirty and fifteen seconds", "十四点三十分十五秒"),
        (
            "telephone",
            "+1 555-123-4567",
            "plus one, five five five, one two three, four five six seven",
            "加幺，五五五，幺二三，四五六七",
        ),
        (
            "telephone",
            "1-800-FLOWERS",
            "one, eight zero zero, F L O W E R S",
            "幺，八零零，FLOWERS",
        ),
        ("currency", "$12.50", "twelve dollars fifty cents", "十二点五美元"),
        ("currency", "$1.00", "one dollar", "一美元"),
        ("currency", "$0.01", "one cent", "零点零一美元"),
        ("currency", "$12.5", "twelve dollars fifty cents", "十二点五美元"),
        ("currency", "$12.345", "twelve point three four five dollars", "十二点三四五美元"),
        ("currency", "£1.01", "one pound one penny", "一点零一英镑"),
        ("currency", "12.50 EUR", "twelve euros fifty cents", "十二点五欧元"),
        ("currency", "usd 3", "three dollars", "三美元"),
        ("currency", "¥100", "one hundred yen", "一百元"),
        ("currency", "¥12.05", "twelve point zero five yen", "十二元零五分"),
        ("currency", "12.50元", "twelve point five yuan", "十二元五角"),
        ("currency", "RMB 1,000", "one thousand yuan", "一千元"),
    ],
)
def test_readings(interpret_as, content, en, zh):
    assert text(interpret_as, content, "en") == en
    assert text(interpret_as, content, "zh") == zh


@pytest.mark.parametrize(
    "fmt,content,en,zh",
    [
        (
            "mdy",
            "12/25/2024",
            "December twenty fifth, twenty twenty four",
            "二零二四年十二月二十五日",
        ),
        (
            "dmy",
            "25.12.2024",
            "December twenty fifth, twenty twenty four",
            "二零二四年十二月二十五日",
        ),
        (
            "ymd",
            "2024-12-25",
            "December twenty fifth, twenty twenty four",
            "二零二四年十二月二十五日",
        ),
        (
            None,
            "2024-12-25",
            "December twenty fifth, twenty twenty four",
            "二零二四年十二月二十五日",
        ),
        (
            "mdy",
            "Dec 25, 2024",
            "December twenty fifth, twenty twenty four",
            "二零二四年十二月二十五日",
        ),
        ("dmy", "1 March 1905", "March first, nineteen oh five", "一九零五年三月一日"),
        ("md", "2/29", "February twenty ninth", "二月二十九日"),
        ("dm", "3/2", "February third", "二月三日"),
        ("ym", "2024/07", "July twenty twenty four", "二零二四年七月"),
        ("my", "07/2024", "July twenty twenty four", "二零二四年七月"),
        ("d", "5", "the fifth", "五日"),
        ("m", "sept", "September", "九月"),
        ("y", "1999", "nineteen ninety nine", "一九九九年"),
    ],
)
def test_dates(fmt, content, en, zh):
    assert text("date", content, "en", fmt) == en
    assert text("date", content, "zh", fmt) == zh


@pytest.mark.parametrize(
    "interpret_as,fmt,content,message",
    [
        ("cardinal", None, "12a", "is not a number"),
        ("cardinal", None, "1" * 22, "more than 21 digits"),
        ("ordinal", None, "third", "is not an ordinal"),
        ("digits", None, "12a", "is not a string of digits"),
        ("date", None, "12/25/2024", "needs a format attribute"),
        ("date", "xyz", "12/25/2024", "unknown say-as date format 'xyz'"),
        ("date", "mdy", "12/25", "is not a date in the format 'mdy'"),
        ("date", "mdy", "13/01/2024", "'13' is not a month"),
        ("date", "mdy", "2/30/2024", "'30' is not a day of the month"),
        ("date", "mdy", "2/29/2023", "'29' is not a day of the month"),
        ("date", "mdy", "Foo 1 2024", "'Foo' is not a month"),
        ("time", None, "noon", "is not a time"),
        ("time", None, "25:00", "is not a valid time of day"),
        ("time", None, "13:00 pm", "is not a valid time of day"),
        ("telephone", None, "555!", "is not a telephone number"),
        ("currency", None, "12 XYZ", "unknown currency 'XYZ'"),
        ("currency", None, "12", "unknown currency '(none)'"),
        ("currency", None, "$12 USD", "is not an amount"),
        ("cardinal", None, " ", "has no content"),
    ],
)
def test_contents_that_cannot_be_read_as_asked(interpret_as, fmt, content, message):
    f = f" format='{fmt}'" if fmt else ""
    doc = f"<speak>\n  It is <say-as interpret-as='{interpret_as}'{f}>{content}</say-as>.</speak>"
    with pytest.raises(SsmlError) as info:
        ssml.parse(doc)
    assert message in info.value.reason
    assert (info.value.line, info.value.column) == (2, 9)


def test_say_as_needs_interpret_as():
    with pytest.raises(SsmlError, match="needs an interpret-as"):
        ssml.parse("<speak><say-as>1</say-as></speak>")


# ---- captions, languages and the normalize flag ----------------------------------------------


def test_captions_show_the_written_form_or_the_spelled_letters():
    assert say("currency", "$12.50").caption == "$12.50"
    assert say("date", "12/25/2024", fmt="mdy").caption == "12/25/2024"
    assert say("characters", "ibm").caption == "i b m"


def test_say_as_reads_in_the_detected_language_without_xml_lang():
    doc = "<speak>我有<say-as interpret-as='cardinal'>3</say-as>个苹果</speak>"
    (item,) = ssml.parse(doc).items
    assert (item.text, item.caption, item.lang) == ("我有三个苹果", "我有3个苹果", None)
    doc = "<speak>I have <say-as interpret-as='cardinal'>3</say-as> apples</speak>"
    assert ssml.parse(doc).text == "I have three apples"


def test_say_as_with_its_own_language():
    doc = (
        "<speak xml:lang='en'>Say <say-as interpret-as='cardinal' xml:lang='zh'>3</say-as></speak>"
    )
    (item,) = ssml.parse(doc).items
    assert (item.text, item.lang) == ("Say 三", "en")


@pytest.mark.parametrize(
    "body,normalize",
    [
        ("<say-as interpret-as='cardinal'>12</say-as>", False),
        ("“<say-as interpret-as='cardinal'>12</say-as>!” [laugh]", False),
        ("<say-as interpret-as='cardinal'>12</say-as> apples", True),
        ("<say-as interpret-as='cardinal'>12</say-as> 3", True),
        ("<say-as interpret-as='characters'>a§</say-as>", True),  # § is left to the normaliser
        ("<sub alias='twelve'>12</sub>", True),
        ("twelve", True),
    ],
)
def test_normalize_is_off_only_when_say_as_wrote_every_word(body, normalize):
    (item,) = ssml.parse(f"<speak>{body}</speak>").items
    assert item.normalize is normalize


# ---- through the real normalisers (e2e) ------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.skipif(
    not (sys.platform == "linux" and platform.machine() == "x86_64"),
    reason="pynini (NeMo, WeTextProcessing) has wheels for Linux x86_64 only",
)
def test_the_real_normalisers_speak_the_say_as_words_unchanged():
    """Mixed items keep normalisation on: the words say-as wrote must come out of NeMo and
    WeTextProcessing as they went in, and the rest of the text is still normalised."""
    from chattts.text import Normalizer

    normalizer = Normalizer()
    assert normalizer.prepare() == {"en": True, "zh": True}, 'pip install ".[text]"'
    doc = (
        "<speak><p xml:lang='en'>In <say-as interpret-as='date' format='y'>2024</say-as> "
        "<say-as interpret-as='characters'>IBM</say-as> sold "
        "<say-as interpret-as='cardinal'>1234</say-as> units for $5, on "
        "<say-as interpret-as='date' format='mdy'>12/25/2024</say-as> at "
        "<say-as interpret-as='time'>2:05 pm</say-as>; call "
        "<say-as interpret-as='telephone'>555-1234</say-as>.</p>"
        "<p xml:lang='zh'>我在<say-as interpret-as='date' format='ymd'>2024-12-25</say-as>"
        "买了<say-as interpret-as='cardinal'>1234</say-as>个，花了"
        "<say-as interpret-as='currency'>¥12.50</say-as>和5元，电话"
        "<say-as interpret-as='telephone'>138-1234</say-as>。</p></speak>"
    )
    en, zh = ssml.parse(doc).items
    assert normalizer(en.text, lang=en.lang) == (
        "In twenty twenty four I B M sold one thousand two hundred thirty four units for "
        "five dollars, on December twenty fifth, twenty twenty four at two oh five PM, call "
        "five five five, one two three four."
    )
    assert normalizer(zh.text, lang=zh.lang) == (
        "我在二零二四年十二月二十五日买了一千二百三十四个，花了十二元五角和五元，电话幺三八，幺二三四。"
    )
