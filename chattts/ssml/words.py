"""Numbers as spoken words, in English and Chinese, for ``<say-as>`` (docs/ssml.md).

Plain integers and digit strings in, words out: the output holds only letters, Chinese
characters and spaces, which the text normalisers leave as they are. Integers up to
:data:`MAX_INTEGER_DIGITS` digits are read; longer ones raise ``ValueError`` (read them with
``interpret-as="digits"``).
"""

from __future__ import annotations

#: Longest integer read as a cardinal, in digits (English: up to the quintillions).
MAX_INTEGER_DIGITS = 21

_EN_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_EN_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_EN_SCALES = "_ thousand million billion trillion quadrillion quintillion".split()
_EN_ORDINAL_IRREGULAR = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}
EN_MONTHS = (
    "January February March April May June July August September October November December"
).split()

ZH_DIGITS = "零一二三四五六七八九"
_ZH_SMALL_UNITS = ("", "十", "百", "千")


def _check(n: int) -> None:
    if n < 0:
        raise ValueError("a negative integer")
    if len(str(n)) > MAX_INTEGER_DIGITS:
        raise ValueError(f"more than {MAX_INTEGER_DIGITS} digits")


def _en_below_1000(n: int) -> list[str]:
    words = []
    if n >= 100:
        words += [_EN_ONES[n // 100], "hundred"]
        n %= 100
        if n == 0:
            return words
    if n < 20:
        words.append(_EN_ONES[n])
    else:
        words.append(_EN_TENS[n // 10])
        if n % 10:
            words.append(_EN_ONES[n % 10])
    return words


def en_cardinal(n: int) -> str:
    """``123`` -> ``"one hundred twenty three"`` (n ≥ 0)."""
    _check(n)
    if n == 0:
        return "zero"
    groups = []
    while n:
        groups.append(n % 1000)
        n //= 1000
    words: list[str] = []
    for scale in range(len(groups) - 1, -1, -1):
        if groups[scale]:
            words += _en_below_1000(groups[scale])
            if scale:
                words.append(_EN_SCALES[scale])
    return " ".join(words)


def en_ordinal(n: int) -> str:
    """``21`` -> ``"twenty first"``, ``12`` -> ``"twelfth"`` (n ≥ 0)."""
    words = en_cardinal(n).split()
    last = words[-1]
    if last in _EN_ORDINAL_IRREGULAR:
        last = _EN_ORDINAL_IRREGULAR[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return " ".join([*words[:-1], last])


def en_digits(digits: str) -> str:
    """``"120"`` -> ``"one two zero"``."""
    return " ".join(_EN_ONES[int(d)] for d in digits)


def en_year(n: int) -> str:
    """A year as it is said: 1999 -> nineteen ninety nine, 1905 -> nineteen oh five,
    2000 -> two thousand, 2007 -> two thousand seven, 2024 -> twenty twenty four."""
    if n < 1000 or n >= 10000 or (n // 100 % 10 == 0 and n % 100 < 10):
        return en_cardinal(n)  # 2000, 2007, 1001: "two thousand seven"
    high, low = divmod(n, 100)
    if low == 0:
        return f"{en_cardinal(high)} hundred"
    if low < 10:
        return f"{en_cardinal(high)} oh {_EN_ONES[low]}"
    return f"{en_cardinal(high)} {en_cardinal(low)}"


def _zh_below_10000(n: int) -> str:
    """A section of up to four digits, with 零 for inner gaps (no leading 零)."""
    out, zero = [], False
    for power in range(3, -1, -1):
        d = n // 10**power % 10
        if d == 0:
            zero = bool(out)
            continue
        if zero:
            out.append("零")
            zero = False
        out.append(ZH_DIGITS[d] + _ZH_SMALL_UNITS[power])
    return "".join(out)


def zh_cardinal(n: int) -> str:
    """``123`` -> ``"一百二十三"``, ``10005`` -> ``"一万零五"``, ``12`` -> ``"十二"`` (n ≥ 0)."""
    _check(n)
    if n == 0:
        return "零"
    sections = []
    while n:
        sections.append(n % 10000)
        n //= 10000
    units = ["", "万", "亿", "万亿", "亿亿", "万亿亿"]
    out, pending_zero = [], False
    for i in range(len(sections) - 1, -1, -1):
        s = sections[i]
        if s == 0:
            pending_zero = bool(out)
            continue
        if out and (pending_zero or s < 1000):
            out.append("零")
        out.append(_zh_below_10000(s) + units[i])
        pending_zero = False
    text = "".join(out)
    return text[1:] if text.startswith("一十") else text


def zh_digits(digits: str, phone: bool = False) -> str:
    """``"110"`` -> ``"一一零"`` (``phone``: 1 is read 幺, ``"幺幺零"``)."""
    table = "零幺二三四五六七八九" if phone else ZH_DIGITS
    return "".join(table[int(d)] for d in digits)


def zh_year(digits: str) -> str:
    """A year read digit by digit: ``"2024"`` -> ``"二零二四"``."""
    return zh_digits(digits)
