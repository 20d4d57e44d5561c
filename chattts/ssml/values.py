"""Attribute values of SSML elements: times, break strengths, prosody, emphasis, languages,
voices and the ChatTTS controls (docs/ssml.md has the table of every keyword).

Each parser takes the attribute's text and returns a number or a value of the plan; a value it
cannot read raises :class:`~chattts.errors.SsmlError` without a position (the parser adds the
element's line and column).
"""

from __future__ import annotations

import math
import re
from typing import Optional

from ..errors import SsmlError, VoicesError
from ..voices import NAME_PATTERN, is_mix, parse_mix
from .plan import MAX_BREAK_SECONDS, PITCH_RANGE, RATE_RANGE, VOLUME_RANGE, Prosody

#: ``<break strength=...>`` in seconds (the durations Azure documents; ``medium`` is also the
#: length of a ``<break/>`` with no attribute).
BREAK_STRENGTHS = {
    "none": 0.0,
    "x-weak": 0.25,
    "weak": 0.5,
    "medium": 0.75,
    "strong": 1.0,
    "x-strong": 1.25,
}
#: ``<prosody rate=...>`` keywords, as tempo factors.
RATE_KEYWORDS = {
    "x-slow": 0.5,
    "slow": 0.75,
    "medium": 1.0,
    "default": 1.0,
    "fast": 1.25,
    "x-fast": 1.5,
}
#: ``<prosody pitch=...>`` keywords, in semitones.
PITCH_KEYWORDS = {
    "x-low": -6.0,
    "low": -3.0,
    "medium": 0.0,
    "default": 0.0,
    "high": 3.0,
    "x-high": 6.0,
}
#: ``<prosody volume=...>`` keywords, in dB.
VOLUME_KEYWORDS = {
    "silent": -math.inf,
    "x-soft": -12.0,
    "soft": -6.0,
    "medium": 0.0,
    "default": 0.0,
    "loud": 6.0,
    "x-loud": 12.0,
}
#: ``<emphasis level=...>`` as a prosody (louder and slower, or softer and faster).
EMPHASIS_LEVELS = {
    "strong": Prosody(rate=0.9, volume=4.0),
    "moderate": Prosody(rate=0.95, volume=2.0),
    "none": Prosody(),
    "reduced": Prosody(rate=1.1, volume=-4.0),
}
#: Ranges of the ChatTTS refine-prompt controls (``[oral_N]``, ``[laugh_N]``, ``[break_N]``)
#: and of ``[speed_N]``.
REFINE_LEVELS = {"oral": range(10), "laugh": range(3), "break": range(8)}
SPEED_LEVELS = range(10)

_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_TIME = re.compile(rf"{_NUMBER}\s*(ms|s)")
_SIGNED = re.compile(rf"([+-]?){_NUMBER}\s*(%|st|db|hz)?", re.I)
_REFINE_TOKEN = re.compile(r"\[(oral|laugh|break)_(\d+)\]")


def _fmt(x: float) -> str:
    return f"{x:g}"


def seconds(value: str) -> float:
    """``"500ms"`` -> 0.5, ``"2s"`` -> 2.0 (at most :data:`MAX_BREAK_SECONDS`)."""
    m = _TIME.fullmatch(value.strip())
    if m is None:
        raise SsmlError(f"break time {value!r} is not a duration such as '500ms' or '2s'")
    s = float(m.group(1)) / (1000.0 if m.group(2) == "ms" else 1.0)
    if s > MAX_BREAK_SECONDS:
        raise SsmlError(
            f"break time {value!r} is longer than the {_fmt(MAX_BREAK_SECONDS)} s a break may last"
        )
    return s


def break_seconds(time: Optional[str], strength: Optional[str]) -> float:
    """A ``<break>``'s silence: ``time`` when given (it wins over ``strength``), else the
    strength's duration, else ``medium``'s."""
    if time is not None:
        return seconds(time)
    if strength is None:
        return BREAK_STRENGTHS["medium"]
    key = strength.strip()
    if key not in BREAK_STRENGTHS:
        raise SsmlError(
            f"unknown break strength {strength!r} (known: {', '.join(BREAK_STRENGTHS)})"
        )
    return BREAK_STRENGTHS[key]


def _signed(value: str, what: str) -> tuple[str, float, str]:
    m = _SIGNED.fullmatch(value.strip())
    if m is None:
        raise SsmlError(f"unknown prosody {what} {value!r}")
    return m.group(1), float(m.group(2)), (m.group(3) or "").lower()


def rate(value: str) -> float:
    """A tempo factor: a keyword, ``"80%"`` (0.8), ``"+20%"`` / ``"-20%"`` (1.2 / 0.8) or a
    number (a factor: ``"1.5"``)."""
    key = value.strip()
    if key in RATE_KEYWORDS:
        return RATE_KEYWORDS[key]
    sign, x, unit = _signed(value, "rate")
    if unit not in ("", "%"):
        raise SsmlError(f"unknown prosody rate {value!r}")
    if unit == "%":
        x = 1.0 + x / 100.0 if sign == "+" else 1.0 - x / 100.0 if sign == "-" else x / 100.0
    elif sign:
        raise SsmlError(f"prosody rate {value!r}: a number is a factor and takes no sign")
    if x <= 0:
        raise SsmlError(f"prosody rate {value!r} is not a positive speed")
    return x


def pitch(value: str) -> float:
    """Semitones: a keyword, ``"+2st"`` / ``"-3st"``, or a relative change ``"+10%"`` /
    ``"-10%"`` / ``"90%"`` (the frequency scaled, as semitones: 12·log2(factor)). Hertz
    are refused: the voice's own pitch, which they would be relative to, is not known."""
    key = value.strip()
    if key in PITCH_KEYWORDS:
        return PITCH_KEYWORDS[key]
    sign, x, unit = _signed(value, "pitch")
    if unit == "hz":
        raise SsmlError(
            f"prosody pitch {value!r}: hertz are not supported (the voice's base pitch is not "
            "known); write semitones ('+2st') or a percentage ('+10%')"
        )
    if unit == "st":
        return -x if sign == "-" else x
    if unit == "%":
        factor = 1.0 + x / 100.0 if sign == "+" else 1.0 - x / 100.0 if sign == "-" else x / 100.0
        if factor <= 0:
            raise SsmlError(f"prosody pitch {value!r} is not a positive frequency")
        return 12.0 * math.log2(factor)
    raise SsmlError(f"unknown prosody pitch {value!r} (write '+2st', '-10%' or a keyword)")


def volume(value: str) -> float:
    """Decibels: a keyword, ``"+6dB"`` / ``"-3dB"``, a relative change ``"+50%"`` /
    ``"-50%"`` (the amplitude scaled) or a number 0-100 (SSML's scale, 100 = as generated,
    0 = silent)."""
    key = value.strip()
    if key in VOLUME_KEYWORDS:
        return VOLUME_KEYWORDS[key]
    sign, x, unit = _signed(value, "volume")
    if unit == "db":
        return -x if sign == "-" else x
    if unit == "%" and sign:
        factor = 1.0 + x / 100.0 if sign == "+" else 1.0 - x / 100.0
    elif unit == "" and not sign:
        if x > 100:
            raise SsmlError(f"prosody volume {value!r}: a number is 0 to 100")
        factor = x / 100.0
    else:
        raise SsmlError(f"unknown prosody volume {value!r} (write '+6dB', '-3dB' or a keyword)")
    return 20.0 * math.log10(factor) if factor > 0 else -math.inf


def check_prosody(p: Prosody) -> Prosody:
    """``p`` (its values rounded to 9 decimals) if every value is within its bounds
    (:data:`RATE_RANGE`...), else SsmlError."""
    p = Prosody(round(p.rate, 9), round(p.pitch, 9), round(p.volume, 9))
    checks = (
        ("rate", p.rate, RATE_RANGE, ""),
        ("pitch", p.pitch, PITCH_RANGE, " st"),
        ("volume", p.volume, VOLUME_RANGE, " dB"),
    )
    for name, x, (lo, hi), unit in checks:
        if name == "volume" and x == -math.inf:
            continue
        if not lo <= x <= hi:
            raise SsmlError(
                f"prosody {name} comes to {x:.3g}{unit} here, outside {_fmt(lo)}..{_fmt(hi)}{unit}"
            )
    return p


def emphasis(level: Optional[str]) -> Prosody:
    """The prosody of ``<emphasis level=...>`` (``moderate`` when no level is given)."""
    key = "moderate" if level is None else level.strip()
    if key not in EMPHASIS_LEVELS:
        raise SsmlError(f"unknown emphasis level {level!r} (known: {', '.join(EMPHASIS_LEVELS)})")
    return EMPHASIS_LEVELS[key]


def language(value: str) -> Optional[str]:
    """``"en-US"`` -> ``"en"``, ``"zh-CN"`` / ``"cmn-Hans-CN"`` -> ``"zh"``; None for other
    languages (the caller warns)."""
    primary = value.strip().replace("_", "-").split("-")[0].lower()
    if primary == "en":
        return "en"
    if primary in ("zh", "cmn"):
        return "zh"
    return None


def voice(name: str) -> str:
    """A voice spec as written, checked: a library name, ``seed_N``, a mix
    (``"a*0.7+b*0.3"``) or a speaker string (not ASCII)."""
    spec = name.strip()
    if not spec:
        raise SsmlError("voice name is empty")
    if not spec.isascii():
        return spec  # a speaker string: decoded (and checked) when spoken
    if is_mix(spec):
        try:
            parse_mix(spec)
        except VoicesError as e:
            raise SsmlError(str(e)) from None
        return spec
    if NAME_PATTERN.fullmatch(spec) is None:
        raise SsmlError(f"voice name {name!r} is not a voice name, a mix or a speaker string")
    return spec


def level(value: Optional[str], allowed: range, what: str) -> int:
    """An integer control level within ``allowed`` (``<chattts:oral level="2">``)."""
    if value is None:
        raise SsmlError(f"{what} needs a level attribute")
    v = value.strip()
    if not v.isdigit() or int(v) not in allowed:
        raise SsmlError(f"{what} level {value!r} is not an integer {allowed[0]}..{allowed[-1]}")
    return int(v)


def refine_prompt(value: str) -> dict[str, int]:
    """``"[oral_2][laugh_0][break_6]"`` -> ``{"oral": 2, "laugh": 0, "break": 6}``."""
    compact = re.sub(r"\s+", "", value)
    found = _REFINE_TOKEN.findall(compact)
    if not compact or "".join(f"[{k}_{n}]" for k, n in found) != compact:
        raise SsmlError(
            f"refine prompt {value!r} is not a sequence of [oral_N] [laugh_N] [break_N] tokens"
        )
    out: dict[str, int] = {}
    for key, n in found:
        out[key] = level(n, REFINE_LEVELS[key], f"refine prompt [{key}_N]")
    return out


def format_refine(levels: dict[str, int]) -> Optional[str]:
    """``{"oral": 2, "break": 6}`` -> ``"[oral_2][break_6]"`` (in the order oral, laugh,
    break); None when empty."""
    if not levels:
        return None
    return "".join(f"[{k}_{levels[k]}]" for k in REFINE_LEVELS if k in levels)
