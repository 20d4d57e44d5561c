"""Long-form narration: documents in, chaptered audiobooks out, resumable (docs/narrate.md).

>>> from chattts.narrate import Narration, NarrationSettings, NarrationVoice, load_document
>>> doc = load_document("book.epub")                                  # doctest: +SKIP
>>> voice = NarrationVoice(chat.sample_random_speaker(seed=3), label="seed_3")  # doctest: +SKIP
>>> with Narration(doc, "out", NarrationSettings(voice)) as n:         # doctest: +SKIP
...     manifest = n.run(chat)

Modules: :mod:`.documents` (reading ``.txt``, ``.md``, ``.html``, ``.epub``; with
:mod:`.markup` and :mod:`.epub`), :mod:`.segments` (settings, segments and their ids),
:mod:`.render` (batches through ``Chat.synthesize``, redraws, progress), :mod:`.store` (the
SQLite progress store), :mod:`.book` (the files), :mod:`.narration` (one narration, the unit a
server job wraps); the command is :mod:`chattts.cli.narrate`. Names are imported on first use,
so that the command line starts without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Chapter": "documents",
    "Document": "documents",
    "load_document": "documents",
    "NarrationSettings": "segments",
    "NarrationVoice": "segments",
    "Pauses": "segments",
    "Segment": "segments",
    "plan": "segments",
    "NarrationProgress": "render",
    "model_identity": "render",
    "ProgressStore": "store",
    "OutputOptions": "book",
    "Narration": "narration",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'chattts.narrate' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = sorted(_EXPORTS)
