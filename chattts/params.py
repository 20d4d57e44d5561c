"""Parameter dataclasses of the two generation passes, with the reference's defaults.

As in the reference, the annotations resolve at run time (``typing.get_type_hints`` works
without torch, and pydantic takes either class as a field type), and two params objects are
equal only when they are the same object (``eq=False``: identity equality, hashable), so they
can be dictionary keys. Compare field by field with ``vars(a) == vars(b)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

#: The reference's defaults of the two streaming fields chattts does not use (see
#: :class:`InferCodeParams`); another value is refused by :mod:`chattts.validation`.
UNUSED_STREAM_DEFAULTS = {"stream_speed": 12000, "pass_first_n_batches": 2}


@dataclass(eq=False)
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


@dataclass(eq=False)
class InferCodeParams(RefineTextParams):
    """Sampling parameters of the code pass (text -> audio codes).

    ``spk_emb`` is a speaker string (annotated ``Optional[str]`` as in the reference; a float
    tensor of H values is accepted at run time too), ``spk_smp`` a speaker sample string from
    :meth:`chattts.Chat.sample_audio_speaker` and ``txt_smp`` its transcript. A voice name or
    mix (``"alice"``, ``"alice*0.7+bob*0.3"``, see :mod:`chattts.voices`) in ``spk_emb`` is
    resolved to a speaker string by ``Chat.infer`` / ``Chat.synthesize`` before the pipeline.

    Streaming (``infer(stream=True)``): ``stream_batch`` is the number of code steps per chunk;
    ``stream_first_batch`` (new) the steps of the first chunk, smaller so that audio starts early;
    ``stream_lookahead`` (new) the steps decoded past a chunk's end and ``stream_context`` (new)
    the steps decoded before its start, so that the convolutional decoders see what they need
    and each chunk is final when emitted. ``stream_speed`` and ``pass_first_n_batches`` exist
    for compatibility with the reference and are not used (chunks are exact and none is held
    back): left at their defaults they change nothing; another value is refused with a
    :class:`chattts.errors.UnsupportedOptionError` rather than silently ignored.
    """

    prompt: str = "[speed_5]"
    spk_emb: Optional[str] = None
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
