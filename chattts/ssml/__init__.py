"""SSML: a W3C SSML 1.1 document read into a typed plan of what to say (docs/ssml.md).

``parse(doc)`` gives a :class:`Plan`: :class:`Speak` items (text, caption, voice, language,
prosody, ChatTTS controls), :class:`Break` silences and :class:`Mark` points, in order.
``is_ssml(text)`` tells whether a str is an SSML document. Documents are read safely (no DTD,
no entity, no file or network access) within the limits ``MAX_*``; every error is a
:class:`chattts.errors.SsmlError` with its line and column.
"""

from ..errors import SsmlError, SsmlWarning
from .parser import CHATTTS_NAMESPACE, SSML_NAMESPACE, is_ssml, parse
from .plan import (
    MAX_BREAK_SECONDS,
    MAX_DEPTH,
    MAX_DOCUMENT_BYTES,
    MAX_ELEMENTS,
    MAX_TOTAL_BREAK_SECONDS,
    PITCH_RANGE,
    RATE_RANGE,
    VOLUME_RANGE,
    Break,
    Item,
    Mark,
    Plan,
    Prosody,
    Speak,
)

__all__ = [
    "CHATTTS_NAMESPACE",
    "MAX_BREAK_SECONDS",
    "MAX_DEPTH",
    "MAX_DOCUMENT_BYTES",
    "MAX_ELEMENTS",
    "MAX_TOTAL_BREAK_SECONDS",
    "PITCH_RANGE",
    "RATE_RANGE",
    "SSML_NAMESPACE",
    "VOLUME_RANGE",
    "Break",
    "Item",
    "Mark",
    "Plan",
    "Prosody",
    "SsmlError",
    "SsmlWarning",
    "Speak",
    "is_ssml",
    "parse",
]
