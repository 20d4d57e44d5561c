"""chattts: conversational text-to-speech with the ChatTTS models.

>>> import chattts
>>> chat = chattts.Chat()
>>> chat.load()                      # doctest: +SKIP
>>> wavs = chat.infer(["Hello!"])    # doctest: +SKIP
"""

from __future__ import annotations

import logging

from . import errors
from .chat import Chat
from .params import InferCodeParams, RefineTextParams

__version__ = "0.1.0"

logging.getLogger("chattts").addHandler(logging.NullHandler())

__all__ = ["Chat", "InferCodeParams", "RefineTextParams", "errors", "__version__"]
