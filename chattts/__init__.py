"""chattts: conversational text-to-speech with the ChatTTS models.

>>> import chattts
>>> chat = chattts.Chat()
>>> chat.load()                      # doctest: +SKIP
>>> wavs = chat.infer(["Hello!"])    # doctest: +SKIP
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from . import errors
from .options import EngineOptions, LoadOptions
from .params import InferCodeParams, RefineTextParams
from .voices import Voice

if TYPE_CHECKING:
    from .chat import Chat

__version__ = "0.1.0"

logging.getLogger("chattts").addHandler(logging.NullHandler())


def __getattr__(name: str) -> Any:
    # ``Chat`` pulls in torch and transformers: import it on first use, so that light entry
    # points (``chattts --help``, ``chattts speaker``) start at once
    if name == "Chat":
        from .chat import Chat

        return Chat
    raise AttributeError(f"module 'chattts' has no attribute {name!r}")


__all__ = [
    "Chat",
    "EngineOptions",
    "InferCodeParams",
    "LoadOptions",
    "RefineTextParams",
    "Voice",
    "errors",
    "__version__",
]
