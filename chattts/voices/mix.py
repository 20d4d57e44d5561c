"""Voice mixes: ``"alice+bob"`` or ``"alice*0.7+bob*0.3"`` (the one mix grammar).

Each voice's speaker vector (the H float16 values its speaker string decodes to, before the L2
normalisation applied at the ``[spk_emb]`` positions) is taken in float32, the weights are
normalised to sum to 1, the weighted sum is rounded to float16 and encoded again: a mix is
itself a speaker string, usable wherever one is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Optional, Union

from ..errors import SpeakerError, VoicesError
from .voice import NAME_PATTERN

if TYPE_CHECKING:
    import torch


def is_mix(spec: str) -> bool:
    """True when ``spec`` names more than one voice or a weight (``+`` or ``*``)."""
    return "+" in spec or "*" in spec


def parse_mix(spec: str) -> list[tuple[str, float]]:
    """``"alice*0.7+bob*0.3"`` -> ``[("alice", 0.7), ("bob", 0.3)]`` (a weight defaults to 1).

    Raises:
        VoicesError: an empty term (``"a+"``), a bad name, a weight that is not a finite number
            ≥ 0, or weights that sum to 0.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise VoicesError("a voice mix must be a non-empty string such as 'alice*0.7+bob*0.3'")
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
    if sum(w for _, w in parts) <= 0:
        raise VoicesError(f"voice mix {spec!r}: the weights sum to 0")
    return parts


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
    names = list(names) if names is not None else [f"voice {i + 1}" for i in range(len(parts))]
    weights = [float(w) for _, w in parts]
    if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
        raise VoicesError("voice mix weights must be finite numbers ≥ 0, not all 0")
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
    total = sum(weights)
    mixed = sum((w / total) * v for w, v in zip(weights, vectors, strict=True))
    return encode_speaker(torch.as_tensor(mixed).to(torch.float16))


__all__ = ["is_mix", "mix_speakers", "parse_mix"]
