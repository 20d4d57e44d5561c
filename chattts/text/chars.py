"""Character tables and character-level steps of the normaliser.

See docs/architecture.md, "Text normalisation".

The two tables are the reference's (``spec/normalizer_tables.json``). Everything here works on
plain ``str`` and never looks inside ``[...]`` tags: callers split the text with :data:`TAG`
and hand over the pieces between tags.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

#: A control tag such as ``[uv_break]``, ``[laugh]`` or ``[speed_5]``: kept verbatim.
TAG = re.compile(r"\[[\w_]+\]")
_TAG_SPLIT = re.compile(r"(\[[\w_]+\])")

#: The model's control tokens (a dialogue turn or an SSML document may hold them as written).
CONTROL_TOKEN = re.compile(
    r"\[(?:uv_break|v_break|lbreak|llbreak|laugh|laugh_[0-2]|break_[0-7]|oral_[0-9]|speed_[0-9])\]"
)

#: The only characters the model reads (tags aside).
VALID = re.compile(r"[\u4e00-\u9fffA-Za-z，。、,\. ]")
_INVALID = re.compile(r"[^\u4e00-\u9fffA-Za-z，。、,\. ]")

CJK = re.compile(r"[\u4e00-\u9fff]")
_SPOKEN = re.compile(r"[\u4e00-\u9fffA-Za-z]")
_LAUGH = re.compile(r"\[laugh(?:_[0-2])?\]")
_EN_WORD = re.compile(r"\b[A-Za-z]+\b")

#: For ``zh`` text: ASCII punctuation to full width (``[``, ``]`` and ``_`` stay).
ZH_HALFWIDTH_TO_FULLWIDTH: dict[str, str] = {
    "!": "！",
    '"': "“",
    "'": "‘",
    "#": "＃",
    "$": "＄",
    "%": "％",
    "&": "＆",
    "(": "（",
    ")": "）",
    ",": "，",
    "-": "－",
    "*": "＊",
    "+": "＋",
    ".": "。",
    "/": "／",
    ":": "：",
    ";": "；",
    "<": "＜",
    "=": "＝",
    ">": "＞",
    "?": "？",
    "@": "＠",
    "\\": "＼",
    "^": "＾",
    "`": "｀",
    "{": "｛",
    "|": "｜",
    "}": "｝",
    "~": "～",
}

#: Punctuation the model cannot read, mapped to a pause it can.
INVALID_CHARACTER_MAP: dict[str, str] = {
    "：": "，",
    "；": "，",
    "！": "。",
    "（": "，",
    "）": "，",
    "【": "，",
    "】": "，",
    "『": "，",
    "』": "，",
    "「": "，",
    "」": "，",
    "《": "，",
    "》": "，",
    "－": "，",
    ":": ",",
    ";": ",",
    "!": ".",
    "(": ",",
    ")": ",",
    ">": ",",
    "<": ",",
    "-": ",",
}

_ZH_TABLE = str.maketrans(ZH_HALFWIDTH_TO_FULLWIDTH)
_INVALID_TABLE = str.maketrans(INVALID_CHARACTER_MAP)

# Latin letters that Unicode does not decompose into an ASCII base letter.
_LATIN_EXTRA = {
    "ß": "ss",
    "ẞ": "SS",
    "æ": "ae",
    "Æ": "AE",
    "œ": "oe",
    "Œ": "OE",
    "ø": "o",
    "Ø": "O",
    "ł": "l",
    "Ł": "L",
    "đ": "d",
    "Đ": "D",
    "ð": "d",
    "Ð": "D",
    "þ": "th",
    "Þ": "Th",
    "ı": "i",
}
# Dashes, read as the hyphen is (a pause once the invalid-character map has run).
_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63"
_WHITESPACE = re.compile(r"[^\S ]")
_VALID_LETTERS = re.compile(r"[\u4e00-\u9fffA-Za-z]+")


def split_tags(text: str) -> list[str]:
    """``text`` cut around its tags: even indices are plain text, odd indices are tags."""
    return _TAG_SPLIT.split(text)


def map_outside_tags(text: str, fn: Callable[[str], str]) -> str:
    """Apply ``fn`` to every non-empty piece of ``text`` between tags; tags stay verbatim."""
    parts = split_tags(text)
    for i in range(0, len(parts), 2):
        if parts[i]:
            parts[i] = fn(parts[i])
    return "".join(parts)


def detect_language(text: str) -> str:
    """``"zh"`` if CJK characters outnumber English words, else ``"en"`` (tags not counted)."""
    plain = TAG.sub(" ", text)
    return "zh" if len(CJK.findall(plain)) > len(_EN_WORD.findall(plain)) else "en"


def has_speech(text: str) -> bool:
    """True when normalised ``text`` holds something to speak: a Latin letter or a Chinese
    character outside tags, or a ``[laugh]`` tag. Pauses (``，。、,.``), spaces and the other
    control tags alone are not speech (docs/text.md, "Nothing to speak")."""
    return bool(_SPOKEN.search(TAG.sub(" ", text)) or _LAUGH.search(text))


def spaces(text: str) -> str:
    """Every whitespace character (newline, tab, no-break space...) becomes a plain space."""
    return _WHITESPACE.sub(" ", text)


def _fold_char(c: str) -> str | None:
    """What ``c`` becomes before normalisation, or None to remove it (a control character)."""
    if c in _LATIN_EXTRA:
        return _LATIN_EXTRA[c]
    if c in _DASHES:
        return "-"
    category = unicodedata.category(c)
    if category == "Nd":  # a decimal digit of any script, full-width digits included
        return str(unicodedata.decimal(c))
    if category[0] == "C":  # control, format, surrogate, private use, unassigned
        return None
    if category[0] == "L" or category == "So":
        # accented Latin letters, ligatures, full-width letters, compatibility ideographs, ㎏...
        base = "".join(
            ch for ch in unicodedata.normalize("NFKD", c) if not unicodedata.combining(ch)
        )
        if base and _VALID_LETTERS.fullmatch(base):
            return base
    return c


def fold(text: str, removed: list[str]) -> str:
    """Rewrite characters the model cannot read into ones it (or a normaliser) can.

    Accented and other Latin letters become ASCII (``café`` -> ``cafe``, ``ß`` -> ``ss``),
    digits of any script become ASCII digits, full-width letters and digits become ASCII,
    dashes become ``-``; control and format characters are removed and appended to
    ``removed``. Everything else is left for the normalisers. ``text`` must hold no tags.
    """
    out = []
    for c in text:
        if c < "\x7f" and c >= " ":
            out.append(c)
            continue
        r = _fold_char(c)
        if r is None:
            removed.append(c)
        else:
            out.append(r)
    return "".join(out)


def to_fullwidth(text: str) -> str:
    """The ``zh`` half-width to full-width punctuation map."""
    return text.translate(_ZH_TABLE)


def map_invalid(text: str) -> str:
    """The reference's invalid-character map (punctuation to the pauses the model reads)."""
    return text.translate(_INVALID_TABLE)


def remove_invalid(text: str, removed: list[str]) -> str:
    """``text`` without the characters the model cannot read; those go to ``removed``."""
    found = _INVALID.findall(text)
    if not found:
        return text
    removed.extend(found)
    return _INVALID.sub("", text)


def describe(chars: list[str]) -> str:
    """The distinct characters of ``chars`` in order, each with its code point."""
    seen = dict.fromkeys(chars)
    return ", ".join(f"{c!r} (U+{ord(c):04X})" for c in seen)
