"""One validation of what a request carries: texts and the parameters of both passes.

Every front end (``Chat.infer``, the Dia-style calls, the CLI, the server, the web UI) reaches
the models through ``Chat.infer`` or ``Chat.synthesize``, which call these checks first, so a
bad value is a clear error naming the field and its allowed range, never an error from deep
inside torch. The ranges (docs/limits.md):

==========================  ==========================================================
field                       allowed
==========================  ==========================================================
temperature                 :data:`MIN_TEMPERATURE` … :data:`MAX_TEMPERATURE` (a list:
                            each value; the code pass takes one per codebook)
top_P                       0 < top_P ≤ 1, or None (no top-P filter)
top_K                       1 … :data:`MAX_TOP_K`, or None (no top-K filter)
repetition_penalty          :data:`MIN_REPETITION_PENALTY` … :data:`MAX_REPETITION_PENALTY`
max_new_token               1 … :data:`MAX_NEW_TOKEN`
min_new_token               0 … max_new_token
manual_seed                 None or 0 … 2**63 − 1 (:data:`MAX_SEED`)
stream_*                    stream_batch, stream_first_batch ≥ 1; lookahead, context ≥ 0
==========================  ==========================================================

The temperature floor exists because logits are divided by it in float32: below about 1e-30
they overflow to infinity and sampling fails; ``temperature=0`` is not greedy decoding here.
The repetition penalty is raised to the power of up to 16 repeats, so its range keeps
``penalty**16`` a normal float32. Every number must be finite; ``bool`` is not a number here.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Optional

import numpy as np

from .errors import InputTypeError, ParameterError, SpeakerError, UnsupportedOptionError
from .params import UNUSED_STREAM_DEFAULTS, InferCodeParams, RefineTextParams

#: Lowest temperature accepted (logits are divided by it; 0 is not greedy decoding).
MIN_TEMPERATURE = 1e-4
#: Highest temperature accepted (past it sampling is uniform noise anyway).
MAX_TEMPERATURE = 100.0
#: Range of the repetition penalty (it is raised to the power of up to 16 repeats).
MIN_REPETITION_PENALTY = 0.01
MAX_REPETITION_PENALTY = 100.0
#: Largest top_K (above the audio vocabulary it changes nothing).
MAX_TOP_K = 1 << 20
#: Largest ``max_new_token``: the model's 4096 positions minus 512 for the prompt. The KV
#: cache of one item holds prompt + max_new_token positions.
MAX_NEW_TOKEN = 4096 - 512
#: Largest seed (``torch.Generator.manual_seed`` takes a signed 64-bit value).
MAX_SEED = 2**63 - 1


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_float(name: str, value: object, low: float, high: float, low_open: bool = False) -> None:
    """``value`` is a finite real number in [low, high] (or (low, high] with ``low_open``).

    Raises:
        InputTypeError: not a real number; ParameterError: not finite or out of range.
    """
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
    if not _is_number(value):
        raise InputTypeError(f"{name} must be a number in {interval}, not {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v) or v > high or v < low or (low_open and v == low):
        raise ParameterError(f"{name} must be a finite number in {interval}, got {value!r}")


def check_int(name: str, value: object, low: int, high: int) -> None:
    """``value`` is an int in [low, high].

    Raises:
        InputTypeError: not an int (a bool or a float is not); ParameterError: out of range.
    """
    if not _is_int(value):
        raise InputTypeError(f"{name} must be an integer in [{low}, {high}], not {value!r}")
    if not low <= int(value) <= high:
        v = int(value)
        shown = (
            v if abs(v) < 10**30 else f"an integer of about {int(v.bit_length() * 0.30103)} digits"
        )
        raise ParameterError(f"{name} must be an integer in [{low}, {high}], got {shown}")


def check_seed(name: str, value: object) -> None:
    """``value`` is None or a seed in [0, 2**63 − 1]."""
    if value is not None:
        check_int(name, value, 0, MAX_SEED)


def check_texts(text: object) -> None:
    """``text`` is a str or a list (or tuple) of str.

    Raises:
        InputTypeError: naming what was given (and, for a list, the first item that is not a
            str).
    """
    if isinstance(text, str):
        return
    if not isinstance(text, (list, tuple)):
        raise InputTypeError(f"text must be a str or a list of str, not {type(text).__name__}")
    for i, t in enumerate(text):
        if not isinstance(t, str):
            raise InputTypeError(
                f"text must be a str or a list of str: item {i} is a {type(t).__name__}"
            )


def _check_common(params: RefineTextParams, what: str, temperatures: list[Any]) -> None:
    for t in temperatures:
        check_float(f"{what}.temperature", t, MIN_TEMPERATURE, MAX_TEMPERATURE)
    if params.top_P is not None:
        check_float(f"{what}.top_P", params.top_P, 0.0, 1.0, low_open=True)
    if params.top_K is not None:
        check_int(f"{what}.top_K", params.top_K, 1, MAX_TOP_K)
    check_float(
        f"{what}.repetition_penalty",
        params.repetition_penalty,
        MIN_REPETITION_PENALTY,
        MAX_REPETITION_PENALTY,
    )
    check_int(f"{what}.max_new_token", params.max_new_token, 1, MAX_NEW_TOKEN)
    check_int(f"{what}.min_new_token", params.min_new_token, 0, int(params.max_new_token))
    check_seed(f"{what}.manual_seed", params.manual_seed)
    if not isinstance(params.prompt, str):
        raise InputTypeError(f"{what}.prompt must be a str, not {type(params.prompt).__name__}")


def check_refine_params(params: RefineTextParams) -> None:
    """The refine pass's sampling parameters are in range (see the module's table).

    Raises:
        ParameterError (a ValueError): a value out of range, naming the field and the range.
        InputTypeError (a TypeError): not a RefineTextParams, or a field of the wrong type.
    """
    if not isinstance(params, RefineTextParams):
        raise InputTypeError(
            f"params_refine_text must be a RefineTextParams, not {type(params).__name__}"
        )
    _check_common(params, "params_refine_text", [params.temperature])


def check_code_params(params: InferCodeParams, num_vq: Optional[int] = None) -> None:
    """The code pass's sampling and streaming parameters are in range (see the module's table).

    ``temperature`` may be a list (one value per codebook; ``num_vq`` of them when given).

    Raises:
        ParameterError (a ValueError): a value out of range, naming the field and the range.
        InputTypeError (a TypeError): not an InferCodeParams, or a field of the wrong type.
        SpeakerError (a ValueError): ``spk_emb`` / ``spk_smp`` of the wrong type.
    """
    if not isinstance(params, InferCodeParams):
        raise InputTypeError(
            f"params_infer_code must be an InferCodeParams, not {type(params).__name__}"
        )
    what = "params_infer_code"
    temps = params.temperature
    if isinstance(temps, (list, tuple)):
        if not temps or (num_vq is not None and len(temps) != num_vq):
            need = f"{num_vq} values" if num_vq is not None else "at least one value"
            raise ParameterError(f"{what}.temperature as a list needs {need}, got {len(temps)}")
        temps = list(temps)
    else:
        temps = [temps]
    _check_common(params, what, temps)
    for name in ("stream_batch", "stream_first_batch"):
        check_int(f"{what}.{name}", getattr(params, name), 1, MAX_NEW_TOKEN)
    for name in ("stream_lookahead", "stream_context"):
        check_int(f"{what}.{name}", getattr(params, name), 0, MAX_NEW_TOKEN)
    for name, default in UNUSED_STREAM_DEFAULTS.items():
        if getattr(params, name) != default:
            raise UnsupportedOptionError(
                f"{what}.{name}={getattr(params, name)!r} is not used by chattts (stream chunks "
                f"are exact and none is held back): leave it at {default}; stream_batch and "
                "stream_first_batch set the chunk sizes (docs/compat.md)"
            )
    if params.txt_smp is not None and not isinstance(params.txt_smp, str):
        raise InputTypeError(f"{what}.txt_smp must be a str, not {type(params.txt_smp).__name__}")
    if params.spk_smp is not None and not isinstance(params.spk_smp, str):
        raise SpeakerError(f"{what}.spk_smp must be a str, not {type(params.spk_smp).__name__}")
    spk = params.spk_emb
    if spk is not None and not isinstance(spk, str) and not hasattr(spk, "detach"):
        raise SpeakerError(
            f"{what}.spk_emb must be a speaker string or a tensor, not {type(spk).__name__}"
        )


#: Longest reference audio a speaker sample is made from, in seconds (docs/limits.md): five
#: minutes is far more than a voice needs (5 to 10 s is plenty), and bounds the DVAE's work.
MAX_SAMPLE_SECONDS = 300.0


def speaker_audio(wav: object, max_samples: Optional[int] = None) -> np.ndarray:
    """A speaker sample's waveform as float32 (N,) or (1, N) (integer PCM scaled to [-1, 1]).

    Raises:
        InputTypeError: not an array of numbers.
        ParameterError (a ValueError): non-finite samples, a shape that is not mono, or more
            than ``max_samples`` samples.
    """
    if hasattr(wav, "detach"):
        wav = wav.detach().cpu().numpy()
    try:
        arr = np.asarray(wav)
    except Exception as e:
        raise InputTypeError(f"a speaker sample must be an array, not {type(wav).__name__}") from e
    if max_samples is not None and arr.size > max_samples:  # before any copy is made
        raise ParameterError(
            f"a speaker sample is made from at most {MAX_SAMPLE_SECONDS:g} s of audio "
            f"({max_samples} samples), not {arr.size}: use a shorter recording"
        )
    if arr.dtype.kind in "iu":
        scale = float(np.iinfo(arr.dtype).max) + 1.0
        offset = scale / 2 if arr.dtype.kind == "u" else 0.0
        arr = (arr.astype(np.float64) - offset) / (scale / 2 if offset else scale)
    elif arr.dtype.kind not in "fb":
        raise InputTypeError(f"a speaker sample must hold numbers, not {arr.dtype}")
    arr = arr.astype(np.float32)
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 1:
        raise ParameterError(f"a speaker sample must be mono audio (N,), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ParameterError("the speaker sample holds NaN or infinite values")
    return arr
