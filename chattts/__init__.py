"""chattts: conversational text-to-speech with the ChatTTS models.

>>> import chattts
>>> chat = chattts.Chat()
>>> chat.load()                      # doctest: +SKIP
>>> wavs = chat.infer(["Hello!"])    # doctest: +SKIP

The package, from the bottom up (docs/architecture.md): ``errors``, ``options``, ``params``,
``config``; ``assets`` (model files, caches); ``model`` (torch modules); ``text``, ``voices``,
``audio``; ``generation`` (the GPT's loop); ``decode`` (GPT outputs to audio); ``pipeline`` (the
request path); ``chat`` and ``dia`` (the Python APIs); ``cli``, ``server``, ``webui``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import logging
import sys
import warnings
from typing import TYPE_CHECKING, Any

from . import errors
from .options import EngineOptions, LoadOptions
from .params import InferCodeParams, RefineTextParams
from .voices import Voice, VoiceLibrary

if TYPE_CHECKING:
    from .chat import Chat

__version__ = "0.1.0"

logging.getLogger("chattts").addHandler(logging.NullHandler())

#: Modules that moved into packages (old import path -> new one); the old paths still import.
MOVED_MODULES = {
    "chattts.dialogue": "chattts.dia.script",
    "chattts.voicelib": "chattts.voices.library",
    "chattts.speaker": "chattts.voices.speaker",
    "chattts.models": "chattts.pipeline.models",
    "chattts.passes": "chattts.pipeline.passes",
    "chattts.streaming": "chattts.decode.stream",
    "chattts.compat": "chattts.chat.compat",
}


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports a module of :data:`MOVED_MODULES` under its old name: the same module object,
    with a ``DeprecationWarning`` that names the new path."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in MOVED_MODULES:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: Any) -> Any:
        new = MOVED_MODULES[spec.name]
        warnings.warn(f"{spec.name} is now {new}", DeprecationWarning, stacklevel=3)
        return importlib.import_module(new)

    def exec_module(self, module: Any) -> None:
        """The module was executed under its new name."""


if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
    sys.meta_path.append(_MovedModuleFinder())


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
    "VoiceLibrary",
    "errors",
    "__version__",
]
