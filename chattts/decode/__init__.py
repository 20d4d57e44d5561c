"""From the GPT's outputs to audio: the Decoder, DVAE and Vocos, on torch or ONNX Runtime
(:mod:`.decoder`), the exported decoder graphs (:mod:`.ort`), and stream windows that make
each streamed chunk final when it is emitted (:mod:`.stream`)."""

from __future__ import annotations

from .decoder import AudioDecoder, LazyDVAE, load_decoders
from .stream import RowWindows, Window, decode_windows, stream_batch

__all__ = [
    "AudioDecoder",
    "LazyDVAE",
    "RowWindows",
    "Window",
    "decode_windows",
    "load_decoders",
    "stream_batch",
]
