"""Voice mixes: ``"alice+bob"`` or ``"alice*0.7+bob*0.3"`` (the one mix grammar).

Each voice's speaker vector (the H float16 values its speaker string decodes to, before the L2
normalisation applied at the ``[spk_emb]`` positions) is taken in float32, the weights are
normalised to sum to 1, the weighted sum is rounded to float16 and encoded again: a mix is
itself a speaker string, usable wherever one is.

A mix is bounded (docs/limits.md, "Voices"): at most :data:`MAX_MIX_TERMS` terms and
:data:`MAX_VOICE_CHARS` characters, checked before any term is looked at; weights are divided by
the largest one first when their sum is not a finite float, so no mix of finite weights
overflows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Optional, Union

from ..errors import SpeakerError, VoicesError
from .voice import NAME_PATTERN

if TYPE_CHECKING:
    import torch


#: Most terms of a mix (each seed term costs a speaker draw, about 25 ms, the first time).
MAX_MIX_TERMS = 16
#: Longest voice spec accepted, in characters: a name, a mix, or a speaker string (the official
#: model's is about 850 characters).
MAX_VOICE_CHARS = 4096


def check_spec_length(spec: str) -> None:
    """Raise :class:`VoicesError` when ``spec`` is longer than :data:`MAX_VOICE_CHARS`."""
    if len(spec) > MAX_VOICE_CHARS:
        raise VoicesError(
            f"a voice is at most {MAX_VOICE_CHARS} characters long, this one has {len(spec)}"
        )


def is_mix(spec: str) -> bool:
    """True when ``spec`` names more than one voice or a weight (``+`` or ``*``)."""
    return "+" in spec or "*" in spec


def parse_mix(spec: str) -> list[tuple[str, float]]:
    """``"alice*0.7+bob*0.3"`` -> ``[("alice", 0.7), ("bob", 0.3)]`` (a weight defaults to 1).

    Raises:
        VoicesError: longer than :data:`MAX_VOICE_CHARS`, more than :data:`MAX_MIX_TERMS` terms,
            an empty term (``"a+"``), a bad name, a weight that is not a finite number ≥ 0, or
            weights that sum to 0.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise VoicesError("a voice mix must be a non-empty string such as 'alice*0.7+bob*0.3'")
    check_spec_length(spec)
    terms = spec.count("+") + 1
    if terms > MAX_MIX_TERMS:
        raise VoicesError(f"a voice mix has at most {MAX_MIX_TERMS} terms, this one has {terms}")
    parts: list[tuple[str, float]] = []
    for term in spec.split("+"):
        name, star, weight = (t.strip() for t in term.partition("*"))
        if not name:
            raise VoicesError(f"voice mix {spec!r}: an empty term (write 'alice+bob')")
        if NAME_PATTERN.fullmatch(name) is None:
            raise VoicesError(f"voice mix {spec!r}: {name!r} is not a voice name")
        w = 1.0
        if star:
            try:
                w = float(weight)
            except ValueError:
                raise VoicesError(
                    f"voice mix {spec!r}: the weight of {name!r} must be a number, not {weight!r}"
                ) from None
            if not math.isfinite(w) or w < 0:
                raise VoicesError(
                    f"voice mix {spec!r}: the weight of {name!r} must be a finite number ≥ 0"
                )
        parts.append((name, w))
    if max(w for _, w in parts) <= 0:
        raise VoicesError(f"voice mix {spec!r}: the weights sum to 0")
    return parts


def normalized(weights: Sequence[float]) -> list[float]:
    """Finite weights ≥ 0, not all 0 -> weights summing to 1. A sum that overflows (two
    weights of 1e308) is avoided by dividing by the largest weight first.

    Raises:
        VoicesError: a weight that is not a finite number ≥ 0, or all weights 0.
    """
    ws = [float(w) for w in weights]
    if not ws or any(not math.isfinite(w) or w < 0 for w in ws) or max(ws) <= 0:
        raise VoicesError("voice mix weights must be finite numbers ≥ 0, not all 0")
    total = sum(ws)
    if not math.isfinite(total):
        top = max(ws)
        ws = [w / top for w in ws]
        total = sum(ws)
    return [w / total for w in ws]


def mix_speakers(
    parts: Sequence[tuple[Union[str, torch.Tensor], float]], names: Optional[Sequence[str]] = None
) -> str:
    """The speaker string of a weighted mix of speakers (see the module's docstring).

    Args:
        parts: (speaker string or (H,) tensor, weight ≥ 0) pairs; the weights are normalised
            to sum to 1.
        names: the voices' names, for the error messages.

    Raises:
        VoicesError: no parts, bad weights, a bad speaker, or speakers of different sizes (the
            voices of models of different hidden size).
    """
    import torch

    from .speaker import decode_speaker, encode_speaker

    if not parts:
        raise VoicesError("a voice mix needs at least one voice")
    if len(parts) > MAX_MIX_TERMS:
        raise VoicesError(f"a voice mix has at most {MAX_MIX_TERMS} terms, not {len(parts)}")
    names = list(names) if names is not None else [f"voice {i + 1}" for i in range(len(parts))]
    weights = normalized([w for _, w in parts])
    vectors = []
    for (spk, _), name in zip(parts, names, strict=True):
        try:
            vectors.append(decode_speaker(spk).float())
        except SpeakerError as e:
            raise VoicesError(f"voice {name!r}: {e}") from e
    sizes = {v.numel() for v in vectors}
    if len(sizes) > 1:
        shown = ", ".join(f"{n} has {v.numel()}" for n, v in zip(names, vectors, strict=True))
        raise VoicesError(
            f"cannot mix voices of models of different sizes ({shown} values); "
            "mix voices made for the same model"
        )
    mixed = sum(w * v for w, v in zip(weights, vectors, strict=True))
    return encode_speaker(torch.as_tensor(mixed).to(torch.float16))


__all__ = [
    "MAX_MIX_TERMS",
    "MAX_VOICE_CHARS",
    "check_spec_length",
    "is_mix",
    "mix_speakers",
    "normalized",
    "parse_mix",
]
