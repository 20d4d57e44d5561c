"""Parameter dataclasses of the two generation passes, with the reference's defaults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Union

if TYPE_CHECKING:  # torch is imported when the models are, not with the parameters
    import torch


@dataclass
class RefineTextParams:
    """Sampling parameters of the refine pass (text -> text with prosody tokens)."""

    prompt: str = ""
    top_P: float = 0.7
    top_K: int = 20
    temperature: float = 0.7
    repetition_penalty: float = 1.0
    max_new_token: int = 384
    min_new_token: int = 0
    show_tqdm: bool = True
    ensure_non_empty: bool = True
    manual_seed: Optional[int] = None


@dataclass
class InferCodeParams(RefineTextParams):
    """Sampling parameters of the code pass (text -> audio codes).

    ``spk_emb`` is a speaker string (or a float tensor of H values), ``spk_smp`` a speaker sample
    string from :meth:`chattts.Chat.sample_audio_speaker` and ``txt_smp`` its transcript.

    Streaming (``infer(stream=True)``): ``stream_batch`` is the number of code steps per chunk;
    ``stream_first_batch`` (new) the steps of the first chunk, smaller so that audio starts early;
    ``stream_lookahead`` (new) the steps decoded past a chunk's end and ``stream_context`` (new)
    the steps decoded before its start, so that the convolutional decoders see what they need
    and each chunk is final when emitted. ``stream_speed`` and ``pass_first_n_batches`` are
    accepted for compatibility with the reference and not used: chunks are exact, none is
    discarded.
    """

    prompt: str = "[speed_5]"
    spk_emb: Optional[Union[str, torch.Tensor]] = None
    spk_smp: Optional[str] = None
    txt_smp: Optional[str] = None
    temperature: Union[float, list[float]] = 0.3
    repetition_penalty: float = 1.05
    max_new_token: int = 2048
    stream_batch: int = 24
    stream_speed: int = 12000
    pass_first_n_batches: int = 2
    stream_first_batch: int = 8
    stream_lookahead: int = 8
    stream_context: int = 16
