"""``<say-as interpret-as=...>``: the element's content rewritten as the words to speak, in
English or Chinese (docs/ssml.md, "say-as").

Each reading turns the content into words only (letters, Chinese characters, spaces and the
pauses ``,`` / ``，``), which the text normalisers leave as they are; a content it cannot read
as asked raises :class:`~chattts.errors.SsmlError`. The caption keeps the written form
(``$12.50``, ``12/25/2024``), except for spelled text, whose caption shows the spelled letters.
"""

from __future__ import annotations

import calendar
import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal

from ..errors import SsmlError
from . import words as w

#: Every ``interpret-as`` value read here, with the reading it selects.
INTERPRET_AS = {
    "characters": "characters",
    "spell-out": "characters",
    "verbatim": "characters",
    "cardinal": "cardinal",
    "number": "cardinal",
    "ordinal": "ordinal",
    "digits": "digits",
    "date": "date",
    "time": "time",
    "telephone": "telephone",
    "currency": "currency",
}
#: ``<say-as interpret-as="date" format=...>`` formats: the order of the written fields.
DATE_FORMATS = ("mdy", "dmy", "ymd", "md", "dm", "ym", "my", "d", "m", "y")
#: Currencies: ISO code -> (English unit, plural, minor unit, plural or None, Chinese unit).
CURRENCIES = {
    "USD": ("dollar", "dollars", "cent", "cents", "美元"),
    "EUR": ("euro", "euros", "cent", "cents", "欧元"),
    "GBP": ("pound", "pounds", "penny", "pence", "英镑"),
    "JPY": ("yen", "yen", None, None, "日元"),
    "CNY": ("yuan", "yuan", None, None, "元"),
}
#: Currency symbols and other codes -> ISO code (``¥`` is yen in English, yuan in Chinese).
CURRENCY_SYMBOLS = {"$": "USD", "€": "EUR", "£": "GBP", "元": "CNY", "RMB": "CNY"}
#: Symbols spelled inside ``characters`` and ``telephone`` (English, Chinese).
SYMBOL_NAMES = {
    "-": ("dash", "杠"),
    ".": ("dot", "点"),
    "@": ("at", "艾特"),
    "_": ("underscore", "下划线"),
    "/": ("slash", "斜杠"),
    "#": ("hash", "井号"),
    "+": ("plus", "加"),
    "&": ("and", "和"),
    "*": ("star", "星"),
    "%": ("percent", "百分号"),
}

_WORDS_ONLY = re.compile(r"[A-Za-z\u4e00-\u9fff ,，]*")
_NUMBER = re.compile(r"([+-]?)(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?")
_ORDINAL = re.compile(r"(?:第\s*)?(\d+)\s*(?:st|nd|rd|th)?", re.I)
_DATE_FIELD = re.compile(r"\d+|[A-Za-z]+")
_TIME = re.compile(r"(\d{1,2})(?:[:.](\d{2}))?(?:[:.](\d{2}))?\s*(?:([ap])\.?\s*m\.?)?", re.I)
_CURRENCY = re.compile(
    r"(?P<pre>[$€£¥]|[A-Za-z]{3})?\s*(?P<neg>-)?\s*(?P<num>[\d,]+(?:\.\d+)?)\s*"
    r"(?P<post>[$€£¥元]|[A-Za-z]{3})?"
)
_PHONE_SEPARATORS = " -.()/"


@dataclass(frozen=True)
class Rendered:
    """What a ``<say-as>`` becomes: ``text`` is spoken, ``caption`` is shown."""

    text: str
    caption: str

    @property
    def final(self) -> bool:
        """True when ``text`` holds the spoken words only (nothing left to normalise)."""
        return _WORDS_ONLY.fullmatch(self.text) is not None


def render(interpret_as: str, fmt: str | None, content: str, lang: str) -> Rendered:
    """``content`` read as ``interpret_as`` (a key of :data:`INTERPRET_AS`) in ``lang``
    (``"en"`` or ``"zh"``); ``fmt`` is the date format (or None)."""
    written = " ".join(content.split())
    plain = unicodedata.normalize("NFKC", written).replace("￥", "¥")
    if not plain:
        raise SsmlError(f"say-as {interpret_as!r} has no content")
    kind = INTERPRET_AS[interpret_as]
    if kind == "characters":
        return _characters(plain, lang)
    try:
        text = _date(plain, fmt, lang) if kind == "date" else _READERS[kind](plain, lang)
    except SsmlError:
        raise
    except ValueError as e:  # a number too long to read as words
        raise SsmlError(f"say-as {kind} {written!r}: {e} (read it as digits)") from None
    return Rendered(text, written)


def _fail(kind: str, content: str, expected: str) -> SsmlError:
    return SsmlError(f"say-as {kind} {content!r} is not {expected}")


def _digit_words(digits: str, lang: str) -> str:
    return w.en_digits(digits) if lang == "en" else w.zh_digits(digits)


def _spell(c: str, lang: str) -> str:
    if c.isascii() and c.isalpha():
        return c.upper()
    if c.isdigit():
        return _digit_words(c, lang)
    if c in SYMBOL_NAMES:
        return SYMBOL_NAMES[c][lang == "zh"]
    return c


def _characters(content: str, lang: str) -> Rendered:
    chars = [c for c in content if not c.isspace()]
    return Rendered(" ".join(_spell(c, lang) for c in chars), " ".join(chars))


def _cardinal_number(sign: str, integer: str, fraction: str | None, lang: str) -> str:
    n = int(integer.replace(",", ""))
    if lang == "en":
        out = w.en_cardinal(n) + (f" point {w.en_digits(fraction)}" if fraction else "")
        return f"minus {out}" if sign == "-" else out
    out = w.zh_cardinal(n) + (f"点{w.zh_digits(fraction)}" if fraction else "")
    return f"负{out}" if sign == "-" else out


def _cardinal(content: str, lang: str) -> str:
    m = _NUMBER.fullmatch(content)
    if m is None:
        raise _fail("cardinal", content, "a number such as 1234, 1,234 or -3.5")
    return _cardinal_number(m.group(1), m.group(2), m.group(3), lang)


def _ordinal(content: str, lang: str) -> str:
    m = _ORDINAL.fullmatch(content)
    if m is None:
        raise _fail("ordinal", content, "an ordinal such as 3, 3rd or 第3")
    n = int(m.group(1))
    return w.en_ordinal(n) if lang == "en" else "第" + w.zh_cardinal(n)


def _digits(content: str, lang: str) -> str:
    digits = re.sub(r"[\s-]", "", content)
    if not digits.isdigit():
        raise _fail("digits", content, "a string of digits")
    return _digit_words(digits, lang)


def _month(field: str, content: str) -> int:
    if field.isdigit():
        return int(field)
    names = [m.lower() for m in w.EN_MONTHS]
    key = field.lower()
    hits = [i for i, m in enumerate(names) if len(key) >= 3 and m.startswith(key)]
    if len(hits) != 1:
        raise _fail("date", content, f"a date: {field!r} is not a month")
    return hits[0] + 1


def _date_fields(content: str, fmt: str | None) -> dict[str, str]:
    fields = _DATE_FIELD.findall(content)
    if fmt is None:
        if len(fields) == 3 and len(fields[0]) == 4:
            fmt = "ymd"
        else:
            raise SsmlError(
                f"say-as date {content!r} needs a format attribute ({', '.join(DATE_FORMATS)})"
            )
    if fmt not in DATE_FORMATS:
        raise SsmlError(f"unknown say-as date format {fmt!r} (known: {', '.join(DATE_FORMATS)})")
    if len(fields) != len(fmt):
        raise _fail("date", content, f"a date in the format {fmt!r}")
    return dict(zip(fmt, fields, strict=True))


def _date(content: str, fmt: str | None, lang: str) -> str:
    """A date: English "December twenty fifth, twenty twenty four", Chinese
    "二零二四年十二月二十五日" (whatever the written order)."""
    f = _date_fields(content, fmt)
    month = _month(f["m"], content) if "m" in f else None
    year = f.get("y")
    if year is not None and not year.isdigit():
        raise _fail("date", content, f"a date: {year!r} is not a year")
    if month is not None and not 1 <= month <= 12:
        raise _fail("date", content, f"a date: {f['m']!r} is not a month")
    day = f.get("d")
    if day is not None:
        days = 31
        if month is not None:
            leap = year is None or calendar.isleap(int(year))  # February 29 without a year
            days = 29 if month == 2 and leap else calendar.mdays[month]
        if not day.isdigit() or not 1 <= int(day) <= days:
            raise _fail("date", content, f"a date: {day!r} is not a day of the month")
    if lang == "zh":
        return "".join(
            (
                w.zh_year(year) + "年" if year else "",
                w.zh_cardinal(month) + "月" if month else "",
                w.zh_cardinal(int(day)) + "日" if day else "",
            )
        )
    month_name = w.EN_MONTHS[month - 1] if month else ""
    day_words = w.en_ordinal(int(day)) if day else ""
    year_words = w.en_year(int(year)) if year else ""
    if not month_name:
        return f"the {day_words}" if day_words else year_words
    head = f"{month_name} {day_words}".strip()
    return f"{head}, {year_words}" if day_words and year_words else f"{head} {year_words}".strip()


def _time(content: str, lang: str) -> str:
    """A time of day: "14:30" -> "fourteen thirty" / "十四点三十分", "2:05 pm" -> "two oh five
    PM" / "下午两点零五分"."""
    m = _TIME.fullmatch(content)
    if m is None:
        raise _fail("time", content, "a time such as 14:30, 2:30 pm or 14:30:15")
    h, mi, s = int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0)
    half = (m.group(4) or "").lower()
    if (half and not 1 <= h <= 12) or h > 23 or mi > 59 or s > 59:
        raise _fail("time", content, "a valid time of day")
    if lang == "zh":
        hour = "两" if h == 2 else w.zh_cardinal(h)
        out = {"a": "上午", "p": "下午", "": ""}[half] + hour + "点"
        if mi:
            out += ("零" if mi < 10 else "") + w.zh_cardinal(mi) + "分"
        return out + (w.zh_cardinal(s) + "秒" if s else "")
    if h == mi == s == 0 and not half:
        return "midnight"
    out = w.en_cardinal(h)
    if mi:
        out += (" oh " if mi < 10 else " ") + w.en_cardinal(mi)
    elif not half:
        out += " oclock"  # the normaliser's spelling: the model reads no apostrophe
    if s:
        out += f" and {w.en_cardinal(s)} seconds"
    return out + {"a": " AM", "p": " PM", "": ""}[half]


def _telephone(content: str, lang: str) -> str:
    """Digits one by one (Chinese reads 1 as 幺), groups separated by a pause."""
    groups, current = [], []
    for c in content:
        if c in _PHONE_SEPARATORS:
            if current:
                groups.append(current)
            current = []
        elif c.isdigit():
            current.append(w.en_digits(c) if lang == "en" else w.zh_digits(c, phone=True))
        elif c == "+" or (c.isascii() and c.isalpha()):
            current.append(_spell(c, lang))
        else:
            raise _fail("telephone", content, "a telephone number (digits, +, letters)")
    if current:
        groups.append(current)
    if not groups:
        raise _fail("telephone", content, "a telephone number")
    sep, join = (", ", " ") if lang == "en" else ("，", "")
    return sep.join(join.join(g) for g in groups)


def _currency(content: str, lang: str) -> str:
    """An amount: "$12.50" -> "twelve dollars fifty cents" / "十二点五美元"; "¥12.50" in
    Chinese -> "十二元五角"."""
    m = _CURRENCY.fullmatch(content)
    if m is None or (m.group("pre") and m.group("post")) or not m.group("num")[0].isdigit():
        raise _fail("currency", content, "an amount such as $12.50, 12.50 USD or EUR 3")
    unit = (m.group("pre") or m.group("post") or "").upper()
    if unit == "¥":
        unit = "CNY" if lang == "zh" else "JPY"
    code = CURRENCY_SYMBOLS.get(unit, unit)
    if code not in CURRENCIES:
        raise SsmlError(
            f"say-as currency {content!r}: unknown currency {unit or '(none)'!r} "
            f"(known: {', '.join(CURRENCIES)}, $ € £ ¥ 元)"
        )
    num = _NUMBER.fullmatch(m.group("num"))
    if num is None:
        raise _fail("currency", content, "an amount such as $12.50")
    sign, integer, fraction = m.group("neg") or "", num.group(2), num.group(3)
    if fraction and len(fraction) == 1:
        fraction += "0"  # $12.5 is $12.50
    one, many, minor, minors, zh_unit = CURRENCIES[code]
    if lang == "zh":
        if code == "CNY" and fraction and len(fraction) == 2:
            return _yuan(sign, integer, fraction)
        return _cardinal_number(sign, integer, fraction and fraction.rstrip("0"), lang) + zh_unit
    if minor is None or (fraction and len(fraction) != 2):
        amount = Decimal(integer.replace(",", "") + "." + (fraction or "0"))
        word = one if amount == 1 else many
        decimals = fraction and fraction.rstrip("0")
        return f"{_cardinal_number(sign, integer, decimals, lang)} {word}"
    major, cents = int(integer.replace(",", "")), int(fraction or 0)
    parts = []
    if major or not cents:
        parts.append(f"{w.en_cardinal(major)} {one if major == 1 else many}")
    if cents:
        parts.append(f"{w.en_cardinal(cents)} {minor if cents == 1 else minors}")
    return ("minus " if sign else "") + " ".join(parts)


def _yuan(sign: str, integer: str, fraction: str) -> str:
    """Chinese yuan with 角 and 分: 12.50 -> 十二元五角, 12.05 -> 十二元零五分."""
    jiao, fen = int(fraction[0]), int(fraction[1]) if len(fraction) > 1 else 0
    out = w.zh_cardinal(int(integer.replace(",", ""))) + "元"
    if jiao:
        out += w.ZH_DIGITS[jiao] + "角"
    if fen:
        out += ("零" if not jiao else "") + w.ZH_DIGITS[fen] + "分"
    return ("负" if sign else "") + out


_READERS = {
    "cardinal": _cardinal,
    "ordinal": _ordinal,
    "digits": _digits,
    "time": _time,
    "telephone": _telephone,
    "currency": _currency,
}
