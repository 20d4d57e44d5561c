"""The request path over a loaded model (docs/architecture.md, "One request").

- :mod:`.models`: the loaded model stack (every module of a model root, the engine);
- :mod:`.passes`: prompts, the refine and code passes;
- :mod:`.core`: :class:`Pipeline`, the one request path every front end adapts;
- :mod:`.requests`: utterances, cancel flags, progress, the reference's waveform and stream
  shapes.
"""

from __future__ import annotations

from .core import Pipeline
from .requests import (
    TRIM_THRESHOLD,
    InterruptGroup,
    Progress,
    Utterance,
    in_order,
    stacked,
    trim_silence,
)

__all__ = [
    "TRIM_THRESHOLD",
    "InterruptGroup",
    "Pipeline",
    "Progress",
    "Utterance",
    "in_order",
    "stacked",
    "trim_silence",
]
