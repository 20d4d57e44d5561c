"""One validation of what a request carries: texts and the parameters of both passes.

Every front end (``Chat.infer``, the Dia-style calls, the CLI, the server, the web UI) reaches
the models through :class:`chattts.pipeline.Pipeline`, which calls these checks first, so a
bad value is a clear error naming the field, never an error from deep inside torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .params import InferCodeParams, RefineTextParams


def check_texts(text: Any) -> None:
    """``text`` is a str or a list of str (raises ``TypeError`` naming what was given)."""


def check_refine_params(params: RefineTextParams) -> None:
    """The refine pass's sampling parameters are in range (raises ``ValueError``)."""


def check_code_params(params: InferCodeParams) -> None:
    """The code pass's sampling and streaming parameters are in range (raises ``ValueError``)."""


def speaker_audio(wav: Any) -> np.ndarray:
    """A speaker sample's waveform as float32 (N,) (integer PCM scaled to [-1, 1]); raises
    ``ValueError`` for non-finite samples or a shape that is not mono."""
    if hasattr(wav, "detach"):
        wav = wav.detach().cpu().numpy()
    return np.asarray(wav, dtype=np.float32)
