"""The text of one segment while a document is read, and the :class:`Speak` item it becomes.

A segment collects, in order, written text, ChatTTS tokens, ``<sub>`` aliases and ``<say-as>``
contents; :meth:`Segment.build` reads the say-as contents in the segment's language, collapses
white space and writes the spoken text and the caption side by side.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

from ..errors import SsmlError
from ..text.chars import CONTROL_TOKEN, detect_language
from . import sayas
from .plan import Prosody, Speak

# A line break between two Chinese characters (or after Chinese punctuation) is no space.
_CJK_LINE_BREAK = re.compile(r"(?<=[\u4e00-\u9fff，。、！？；：])\s*\n\s*(?=[\u4e00-\u9fff])")
_SPACES = re.compile(r"\s+")
# A token before punctuation leaves no space in a caption ("funny [laugh]." -> "funny.").
_TOKEN_BEFORE_PUNCTUATION = re.compile(
    rf"\s*(?:{CONTROL_TOKEN.pattern}\s*)+(?=[,.!?;:，。！？；：、…])"
)
# Written text that needs no normaliser: pauses and quotes only (after tokens are removed).
_NEUTRAL = re.compile(r"[\s,.，。、!?！？;；:：…\"'“”‘’()（）-]*")


@dataclass(frozen=True)
class State:
    """What the enclosing elements say about the text inside them."""

    voice: Optional[str] = None
    lang: Optional[str] = None
    prosody: Prosody = Prosody()
    refine: tuple[tuple[str, int], ...] = ()  # the refine controls, as (name, level) pairs
    speed: Optional[int] = None


@dataclass(frozen=True)
class Piece:
    """One part of a segment. ``kind``: ``"text"`` (written text, normalised later),
    ``"token"`` (a ChatTTS token: spoken, never captioned), ``"alias"`` (a ``<sub>``'s alias:
    spoken and captioned) or ``"say-as"`` (``text`` is the content, read by :meth:`build`)."""

    kind: str
    text: str
    interpret_as: str = ""
    format: Optional[str] = None
    lang: Optional[str] = None  # the say-as element's own xml:lang
    line: Optional[int] = None
    column: Optional[int] = None


def collapse(text: str) -> str:
    """White space as SSML reads it: runs become one space, none between Chinese lines."""
    return _SPACES.sub(" ", _CJK_LINE_BREAK.sub("", text)).strip()


def caption(text: str) -> str:
    """``text`` without ChatTTS tokens, white space collapsed."""
    return collapse(CONTROL_TOKEN.sub(" ", _TOKEN_BEFORE_PUNCTUATION.sub("", text)))


@dataclass
class Segment:
    """The pieces collected since the last item boundary."""

    pieces: list[Piece] = field(default_factory=list)

    def add(self, piece: Piece) -> None:
        if piece.kind == "text" and self.pieces and self.pieces[-1].kind == "text":
            self.pieces[-1] = Piece("text", self.pieces[-1].text + piece.text)
        else:
            self.pieces.append(piece)

    def build(self, state: State, refine_prompt: Optional[str]) -> Optional[Speak]:
        """The :class:`Speak` item of the pieces spoken in ``state`` (None when nothing is
        spoken), and an empty segment again."""
        pieces, self.pieces = self.pieces, []
        if not any(p.text.strip() for p in pieces):
            return None
        lang = state.lang or detect_language(
            " ".join(p.text for p in pieces if p.kind in ("text", "alias", "say-as"))
        )
        texts, captions = [], []
        final_words, to_normalise = False, False
        for p in pieces:
            if p.kind == "say-as":
                try:
                    r = sayas.render(p.interpret_as, p.format, p.text, p.lang or lang)
                except SsmlError as e:
                    raise SsmlError(e.reason, p.line, p.column) from None
                texts.append(r.text)
                captions.append(r.caption)
                final_words |= r.final
                to_normalise |= not r.final
                continue
            texts.append(p.text)
            captions.append(p.text)  # tokens too: caption() takes them out with their space
            if p.kind != "token" and not _NEUTRAL.fullmatch(CONTROL_TOKEN.sub("", p.text)):
                to_normalise = True
        text = collapse("".join(texts))
        if not text:
            return None
        return Speak(
            text=text,
            caption=caption("".join(captions)),
            voice=state.voice,
            lang=state.lang,
            prosody=state.prosody,
            refine_prompt=refine_prompt,
            speed=state.speed,
            normalize=not (final_words and not to_normalise),
        )
