"""Reading an SSML document into a :class:`~chattts.ssml.plan.Plan` (docs/ssml.md).

The document goes through defusedxml's expat SAX reader with DTDs, entity declarations and
external references forbidden, so no entity is ever expanded and nothing is ever fetched; the
size is checked before parsing, the depth, element count and break time while reading, so a
hostile document is refused after at most :data:`~chattts.ssml.plan.MAX_DOCUMENT_BYTES` of
input. Every error is a :class:`~chattts.errors.SsmlError` naming its line and column.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass, replace
from typing import Optional
from xml.sax import SAXParseException, handler, xmlreader

from ..errors import SsmlError, SsmlWarning
from . import values
from .plan import (
    MAX_DEPTH,
    MAX_DOCUMENT_BYTES,
    MAX_ELEMENTS,
    MAX_TOTAL_BREAK_SECONDS,
    Break,
    Item,
    Mark,
    Plan,
)
from .sayas import INTERPRET_AS
from .segment import Piece, Segment, State

#: The SSML namespace, and the namespace of the ChatTTS controls (``xmlns:chattts=...``; the
#: prefix ``chattts`` may also be used without declaring it).
SSML_NAMESPACE = "http://www.w3.org/2001/10/synthesis"
CHATTTS_NAMESPACE = "urn:chattts:ssml"

#: ChatTTS tokens written as empty elements (``<chattts:laugh/>`` -> ``[laugh]``).
TOKEN_ELEMENTS = ("laugh", "uv_break", "v_break", "lbreak", "llbreak")
# SSML elements whose start and end are item boundaries (they change how text is spoken).
_STRUCTURE = {"speak", "p", "s", "prosody", "voice", "lang", "emphasis"}
# SSML elements whose content is read as written text, with no effect of their own.
_PLAIN = {"token", "w"}
# SSML elements whose content is not spoken.
_SILENT = {"meta", "metadata"}
_IS_SSML = re.compile(r"\ufeff?\s*(?:<\?xml[^>]*\?>\s*)?(?:<!--.*?-->\s*)*<speak[\s/>]", re.S)


def is_ssml(text: object) -> bool:
    """True for a str whose first characters (after spaces, an XML declaration and comments)
    open a ``<speak>`` element. It does not parse the document."""
    return isinstance(text, str) and _IS_SSML.match(text) is not None


@dataclass(frozen=True)
class _Frame:
    """An open element: ``mode`` is how its content is read (``"speak"``, ``"silent"``,
    ``"say-as"``), ``splits`` whether its start and end are item boundaries."""

    qname: str
    state: State
    mode: str = "speak"
    splits: bool = False
    scope: tuple[tuple[str, str], ...] = ()  # namespace prefixes in force: (prefix, uri)


class _Reader(handler.ContentHandler):
    """A SAX content handler that turns SSML events into plan items."""

    def __init__(self) -> None:
        super().__init__()
        self.locator: Optional[xmlreader.Locator] = None
        self.frames: list[_Frame] = []
        self.items: list[Item] = []
        self.segment = Segment()
        self.captured: list[str] = []  # the text of the open <say-as>
        self.elements = 0
        self.break_total = 0.0
        self.lang: Optional[str] = None
        self.warned: dict[str, None] = {}
        # the open <say-as>: (interpret-as, format, language) and its line and column
        self.say_as: tuple[str, Optional[str], Optional[str]] = ("", None, None)
        self.say_as_at: tuple[Optional[int], Optional[int]] = (None, None)

    # -- positions and warnings ------------------------------------------------------------

    def setDocumentLocator(self, locator: xmlreader.Locator) -> None:
        self.locator = locator

    def position(self) -> tuple[Optional[int], Optional[int]]:
        """The parser's line and column, both from 1."""
        if self.locator is None:
            return None, None
        return self.locator.getLineNumber(), self.locator.getColumnNumber() + 1

    def warn(self, message: str) -> None:
        self.warned.setdefault(message, None)

    # -- SAX events ------------------------------------------------------------------------

    def startElement(self, name: str, attrs: xmlreader.AttributesImpl) -> None:
        try:
            self._start(name, dict(attrs))
        except SsmlError as e:
            raise e if e.line is not None else SsmlError(e.reason, *self.position()) from None

    def endElement(self, name: str) -> None:
        frame = self.frames.pop()
        if frame.mode == "say-as":
            self._end_say_as(frame)
        elif frame.splits:
            self._flush(frame.state)

    def characters(self, content: str) -> None:
        mode = self.frames[-1].mode if self.frames else "silent"
        if mode == "say-as":
            self.captured.append(content)
        elif mode == "speak":
            self.segment.add(Piece("text", content))

    # -- elements --------------------------------------------------------------------------

    def _start(self, qname: str, attrs: dict[str, str]) -> None:
        self.elements += 1
        if self.elements > MAX_ELEMENTS:
            raise SsmlError(f"more than {MAX_ELEMENTS} elements")
        if len(self.frames) >= MAX_DEPTH:
            raise SsmlError(f"elements nested deeper than {MAX_DEPTH}")
        parent = self.frames[-1] if self.frames else None
        scope = dict(parent.scope if parent else ())
        for key, uri in attrs.items():
            if key == "xmlns" or key.startswith("xmlns:"):
                scope[key[6:]] = uri
        namespace, local = self._resolve(qname, scope)
        frame = _Frame(qname, parent.state if parent else State(), scope=tuple(scope.items()))
        if parent is None:
            frame = self._root(frame, namespace, local, attrs)
        elif parent.mode == "say-as":
            raise SsmlError(f"<{parent.qname}> holds text only, not <{qname}>")
        elif parent.mode == "silent":
            frame = replace(frame, mode="silent")
        elif namespace == CHATTTS_NAMESPACE:
            frame = self._chattts(frame, local, attrs)
        elif namespace == SSML_NAMESPACE:
            frame = self._ssml(frame, local, attrs)
        else:
            self.warn(f"unknown SSML element <{qname}>: its text is spoken")
        self.frames.append(frame)

    @staticmethod
    def _resolve(qname: str, scope: dict[str, str]) -> tuple[str, str]:
        prefix, _, local = qname.rpartition(":")
        uri = scope.get(prefix, SSML_NAMESPACE if not prefix else "")
        if prefix == "chattts" and not uri:
            uri = CHATTTS_NAMESPACE
        return uri or f"unbound:{prefix}", local

    def _root(self, frame: _Frame, namespace: str, local: str, attrs: dict[str, str]) -> _Frame:
        if namespace != SSML_NAMESPACE or local != "speak":
            raise SsmlError(f"the root element must be <speak>, not <{frame.qname}>")
        frame = self._with_lang(replace(frame, splits=True), attrs)
        self.lang = frame.state.lang
        return frame

    def _with_lang(self, frame: _Frame, attrs: dict[str, str]) -> _Frame:
        """``frame`` with its ``xml:lang`` applied (an item boundary when there is one)."""
        tag = attrs.get("xml:lang")
        if tag is None:
            return frame
        lang = values.language(tag)
        if lang is None:
            self.warn(
                f"language {tag!r} is not supported (English and Chinese are): its text is "
                "normalised in the language detected"
            )
        self._flush(frame.state)
        return replace(frame, splits=True, state=replace(frame.state, lang=lang))

    def _ssml(self, frame: _Frame, local: str, attrs: dict[str, str]) -> _Frame:
        if local == "break":
            self._break(frame.state, attrs)
            return frame
        if local == "mark":
            self._mark(frame.state, attrs)
            return frame
        if local == "say-as":
            return self._say_as(frame, attrs)
        if local == "sub":
            if "alias" not in attrs:
                raise SsmlError("<sub> needs an alias attribute")
            self.segment.add(Piece("alias", attrs["alias"]))
            return replace(frame, mode="silent")
        if local in ("audio", "lexicon"):
            raise SsmlError(
                f"<{local}> is not supported: an SSML document never reads files or the network"
            )
        if local == "phoneme":
            self.warn(
                "<phoneme> is not supported (the model has no phoneme or pinyin tokens): "
                "its text is spoken as written"
            )
        elif local in _SILENT:
            return replace(frame, mode="silent")
        elif local == "speak":
            raise SsmlError("<speak> inside <speak>")
        elif local not in _STRUCTURE and local not in _PLAIN:
            self.warn(f"unknown SSML element <{frame.qname}>: its text is spoken")
        if local in _STRUCTURE:
            self._flush(frame.state)
            frame = replace(frame, splits=True, state=self._structure(local, frame.state, attrs))
        return self._with_lang(frame, attrs)

    def _structure(self, local: str, state: State, attrs: dict[str, str]) -> State:
        """The state inside a ``<prosody>``, ``<emphasis>``, ``<voice>`` or ``<lang>``."""
        if local == "prosody":
            for unsupported in ("contour", "range", "duration"):
                if unsupported in attrs:
                    self.warn(f"<prosody {unsupported}=...> is not supported: it is ignored")
            inner = values.Prosody(
                rate=values.rate(attrs["rate"]) if "rate" in attrs else 1.0,
                pitch=values.pitch(attrs["pitch"]) if "pitch" in attrs else 0.0,
                volume=values.volume(attrs["volume"]) if "volume" in attrs else 0.0,
            )
            return replace(state, prosody=values.check_prosody(state.prosody.then(inner)))
        if local == "emphasis":
            inner = values.emphasis(attrs.get("level"))
            return replace(state, prosody=values.check_prosody(state.prosody.then(inner)))
        if local == "voice":
            for unsupported in ("gender", "age", "variant", "languages"):
                if unsupported in attrs:
                    self.warn(f"<voice {unsupported}=...> is not supported: voices go by name")
            if "name" not in attrs:
                raise SsmlError("<voice> needs a name attribute (a voice, a mix or seed_N)")
            return replace(state, voice=values.voice(attrs["name"]))
        if local == "lang" and "xml:lang" not in attrs:
            raise SsmlError("<lang> needs an xml:lang attribute")
        return state

    def _break(self, state: State, attrs: dict[str, str]) -> None:
        seconds = values.break_seconds(attrs.get("time"), attrs.get("strength"))
        if seconds <= 0:  # strength="none", time="0ms": no pause, no boundary
            return
        self._flush(state)
        self.break_total += seconds
        if self.break_total > MAX_TOTAL_BREAK_SECONDS + 1e-9:
            raise SsmlError(
                f"the breaks of the document come to more than {MAX_TOTAL_BREAK_SECONDS:g} s"
            )
        self.items.append(Break(seconds))

    def _mark(self, state: State, attrs: dict[str, str]) -> None:
        name = attrs.get("name", "").strip()
        if not name:
            raise SsmlError("<mark> needs a non-empty name attribute")
        self._flush(state)
        self.items.append(Mark(name))

    def _say_as(self, frame: _Frame, attrs: dict[str, str]) -> _Frame:
        kind = attrs.get("interpret-as", "").strip()
        if not kind:
            raise SsmlError("<say-as> needs an interpret-as attribute")
        if kind not in INTERPRET_AS:
            self.warn(f"<say-as interpret-as={kind!r}> is not supported: its text is spoken")
            return frame
        self.captured = []
        lang_tag = attrs.get("xml:lang")
        self.say_as = (kind, attrs.get("format"), lang_tag and values.language(lang_tag))
        self.say_as_at = self.position()
        return replace(frame, mode="say-as")

    def _end_say_as(self, frame: _Frame) -> None:
        kind, fmt, lang = self.say_as
        line, column = self.say_as_at
        content = "".join(self.captured)
        self.segment.add(Piece("say-as", content, kind, fmt, lang, line, column))

    def _chattts(self, frame: _Frame, local: str, attrs: dict[str, str]) -> _Frame:
        state = frame.state
        if local in TOKEN_ELEMENTS:
            self.segment.add(Piece("token", f"[{local}]"))
            return frame
        if local == "speed":
            state = replace(
                state, speed=values.level(attrs.get("level"), values.SPEED_LEVELS, local)
            )
        elif local == "oral":
            level = values.level(attrs.get("level"), values.REFINE_LEVELS["oral"], local)
            state = replace(state, refine=(*state.refine, ("oral", level)))
        elif local == "refine":
            state = replace(state, refine=(*state.refine, *self._refine_levels(attrs)))
        else:
            known = ", ".join((*TOKEN_ELEMENTS, "oral", "refine", "speed"))
            raise SsmlError(f"unknown ChatTTS control <{frame.qname}> (known: {known})")
        self._flush(frame.state)
        return replace(frame, splits=True, state=state)

    @staticmethod
    def _refine_levels(attrs: dict[str, str]) -> list[tuple[str, int]]:
        levels = list(values.refine_prompt(attrs["prompt"]).items()) if "prompt" in attrs else []
        for key, allowed in values.REFINE_LEVELS.items():
            if key in attrs:
                levels.append((key, values.level(attrs[key], allowed, f"refine {key}")))
        if not levels:
            raise SsmlError("<chattts:refine> needs a prompt, oral, laugh or break attribute")
        return levels

    def _flush(self, state: State) -> None:
        """End the current segment: its :class:`Speak` item (if any) joins the plan."""
        item = self.segment.build(state, values.format_refine(dict(state.refine)))
        if item is not None:
            self.items.append(item)


def parse(doc: str) -> Plan:
    """Read the SSML document ``doc`` into a :class:`~chattts.ssml.plan.Plan`.

    Warnings (:class:`~chattts.errors.SsmlWarning`, one per kind: an unknown element name, a
    ``<phoneme>``, an unsupported language...) are issued once the whole document is read.

    Raises:
        SsmlError: malformed XML, a DTD or entity declaration, ``<audio>``, a bad attribute
            value, or a limit of docs/ssml.md exceeded; ``line`` and ``column`` say where.
    """
    if not isinstance(doc, str):
        raise SsmlError(f"an SSML document is a str, not {type(doc).__name__}")
    try:
        size = len(doc.encode("utf-8"))
    except UnicodeEncodeError as e:
        line, column = _line_column(doc, e.start)
        code = f"U+{ord(doc[e.start]):04X}"
        raise SsmlError(f"{code} is a lone surrogate, not a character", line, column) from None
    if size > MAX_DOCUMENT_BYTES:
        raise SsmlError(f"the document has {size} bytes, more than {MAX_DOCUMENT_BYTES}")
    reader = _Reader()
    _read(doc, reader)
    for message in reader.warned:
        warnings.warn(message, SsmlWarning, stacklevel=2)
    return Plan(items=tuple(reader.items), lang=reader.lang)


def _read(doc: str, reader: _Reader) -> None:
    from defusedxml.common import DefusedXmlException
    from defusedxml.expatreader import DefusedExpatParser

    parser = DefusedExpatParser(forbid_dtd=True, forbid_entities=True, forbid_external=True)
    parser.setContentHandler(reader)
    source = xmlreader.InputSource()
    source.setCharacterStream(io.StringIO(doc))
    try:
        parser.parse(source)
    except SAXParseException as e:
        line, column = e.getLineNumber(), e.getColumnNumber()
        raise SsmlError(f"malformed XML: {e.getMessage()}", line, column + 1) from None
    except DefusedXmlException:
        at = doc.find("<!DOCTYPE")
        line, column = reader.position() if at < 0 else _line_column(doc, at)
        raise SsmlError(
            "a DTD (<!DOCTYPE ...>) is not allowed: SSML needs no entities or external files",
            line,
            column,
        ) from None


def _line_column(doc: str, index: int) -> tuple[int, int]:
    """The line and column (both from 1) of ``doc[index]``."""
    return doc.count("\n", 0, index) + 1, index - doc.rfind("\n", 0, index)
