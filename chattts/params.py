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


#: :class:`Sampling`'s names -> :class:`InferCodeParams`' fields.
_CODE_FIELDS = (
    ("temperature", "temperature"),
    ("top_p", "top_P"),
    ("top_k", "top_K"),
    ("max_new_token", "max_new_token"),
)


@dataclass(frozen=True)
class Sampling:
    """Sampling options as the front ends name them (OpenAI's ``top_p``...), mapped once onto
    the passes' parameters; None keeps the reference's default.

    Attributes:
        temperature: of the code pass (0.3 by default).
        top_p, top_k: the code pass's top-P and top-K filters.
        max_new_token: the most code steps of one segment.
        seed: seeds the segments (segment i gets ``seed + i``) and, without a voice, picks it.
        speed: ChatTTS's ``[speed_N]`` code prompt, 0-9.
        refine_prompt: the refine pass's prompt (``"[oral_2][laugh_0][break_6]"``).
        refine_max_new_token: the most tokens the refine pass writes per segment (384).
        show_tqdm: show progress bars on the terminal.
    """

    temperature: Optional[float] = None
    top_p: Optional[float] = None
    top_k: Optional[int] = None
    max_new_token: Optional[int] = None
    seed: Optional[int] = None
    speed: Optional[int] = None
    refine_prompt: Optional[str] = None
    refine_max_new_token: Optional[int] = None
    show_tqdm: bool = False

    def code_params(
        self, manual_seed: Optional[int] = None, speed: Optional[int] = None, **fields: object
    ) -> InferCodeParams:
        """The code pass's parameters: these options, ``manual_seed``, the ``[speed_N]`` prompt
        of ``speed`` (else of :attr:`speed`), and ``fields`` (the voice's ``spk_emb`` or
        ``spk_smp`` + ``txt_smp``)."""
        out: dict[str, object] = {"manual_seed": manual_seed, "show_tqdm": self.show_tqdm}
        for name, field in _CODE_FIELDS:
            if getattr(self, name) is not None:
                out[field] = getattr(self, name)
        speed = self.speed if speed is None else speed
        if speed is not None:
            out["prompt"] = f"[speed_{speed}]"
        return InferCodeParams(**out, **fields)  # type: ignore[arg-type]

    def refine_params(
        self, manual_seed: Optional[int] = None, prompt: Optional[str] = None
    ) -> RefineTextParams:
        """The refine pass's parameters, with ``prompt`` (else :attr:`refine_prompt`)."""
        prompt = self.refine_prompt if prompt is None else prompt
        limit = (
            {}
            if self.refine_max_new_token is None
            else {"max_new_token": self.refine_max_new_token}
        )
        return RefineTextParams(
            prompt=prompt or "", manual_seed=manual_seed, show_tqdm=self.show_tqdm, **limit
        )
