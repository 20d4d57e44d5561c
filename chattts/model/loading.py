"""Strict weight loading from safetensors, with errors that name the file and the tensor."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterable
from typing import Optional

import torch
from torch import nn

from ..errors import AssetNotFoundError, WeightsError

#: Floating dtypes accepted in weight files; tensors are cast to the module's dtype.
ACCEPTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def read_safetensors(path: str) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file on the CPU."""
    from safetensors.torch import load_file

    if not os.path.isfile(path):
        raise AssetNotFoundError(f"model file not found: {path}")
    try:
        return load_file(path, device="cpu")
    except Exception as e:  # safetensors raises several error types for bad files
        raise WeightsError(f"{path}: not a readable safetensors file ({e})") from e


def load_strict(
    module: nn.Module,
    state: dict[str, torch.Tensor],
    path: str,
    ignore: Iterable[str] = (),
    prefix: str = "",
) -> None:
    """Load ``state`` into ``module``: every key present, none unexpected, every shape equal,
    every value finite.

    Float tensors of any accepted dtype are cast to the dtype of the module's own tensor; a
    float parameter given as an integer tensor (an int8 file), as float64, or holding NaN or
    infinity is refused. ``ignore`` names keys of the file that the module does not use;
    ``prefix``: what the file's names carry before ``state``'s (for the messages).

    Raises:
        WeightsError: naming ``path`` and the tensor.
    """
    own = module.state_dict()
    ignored = set(ignore)
    missing = sorted(k for k in own if k not in state)
    unexpected = sorted(k for k in state if k not in own and k not in ignored)
    if missing:
        raise WeightsError(
            f"{path}: missing tensor(s) {missing[:5]}" + ("..." if len(missing) > 5 else "")
        )
    if unexpected:
        raise WeightsError(
            f"{path}: unexpected tensor(s) {unexpected[:5]}"
            + ("..." if len(unexpected) > 5 else "")
        )
    converted = {}
    for name, target in own.items():
        t = state[name]
        shown = prefix + name
        if tuple(t.shape) != tuple(target.shape):
            raise WeightsError(
                f"{path}: tensor {shown!r} has shape {list(t.shape)}, expected {list(target.shape)}"
            )
        converted[name] = _checked(t, target, shown, path)
    module.load_state_dict(converted, strict=True, assign=True)


def _checked(t: torch.Tensor, target: torch.Tensor, name: str, path: str) -> torch.Tensor:
    """``t`` in ``target``'s dtype, or WeightsError: a dtype that does not fit (an int8 tensor
    where floats belong, float64), or values that are not finite."""
    if target.is_floating_point():
        if t.dtype not in ACCEPTED_DTYPES:
            accepted = ", ".join(str(d).removeprefix("torch.") for d in ACCEPTED_DTYPES)
            raise WeightsError(
                f"{path}: tensor {name!r} has unsupported dtype {t.dtype} (expected {accepted})"
            )
        if t.numel() and not all(bool(v.isfinite()) for v in torch.aminmax(t)):
            # aminmax: one pass, NaN and infinity carried through (16x isfinite().all())
            bad = int((~torch.isfinite(t)).sum())
            raise WeightsError(f"{path}: tensor {name!r} holds {bad} NaN or infinite value(s)")
        return t.to(target.dtype)
    if (
        t.is_floating_point()
        or t.is_complex()
        or (t.dtype == torch.bool) != (target.dtype == torch.bool)
    ):
        raise WeightsError(f"{path}: tensor {name!r} has dtype {t.dtype}, expected {target.dtype}")
    return t.to(target.dtype)


def load_module(
    module: nn.Module, path: str, prefix: str = "", ignore: Iterable[str] = ()
) -> nn.Module:
    """Read ``path`` and strictly load its tensors (optionally under ``prefix``) into ``module``."""
    state = read_safetensors(path)
    if prefix:
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    load_strict(module, state, path, ignore)
    return module


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Optional[Callable[[int], int]]:
    """glibc's ``malloc_trim``, looked up once (None where there is none)."""
    import ctypes
    import ctypes.util

    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    return trim


def release_free_memory() -> None:
    """Hand the heap memory freed while loading back to the OS (glibc's ``malloc_trim``).

    Loading frees the float weights that int8 quantisation or weight-norm folding replaced;
    glibc keeps such freed blocks in its heap, where they still count as resident memory.
    Elsewhere (other C libraries, other systems) this does nothing.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def check_file_layout(module: nn.Module, path: str, ignore: Iterable[str] = ()) -> None:
    """Check, from the file header alone, that ``path`` has exactly ``module``'s tensors.

    The same errors as :func:`load_strict` (missing, unexpected, wrong shape), without reading
    any weights: for modules that are loaded later, on first use. ``module`` may live on the
    meta device.
    """
    from safetensors import safe_open

    if not os.path.isfile(path):
        raise AssetNotFoundError(f"model file not found: {path}")
    try:
        with safe_open(path, framework="pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types
        raise WeightsError(f"{path}: not a readable safetensors file ({e})") from e
    own = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    ignored = set(ignore)
    missing = sorted(k for k in own if k not in shapes)
    unexpected = sorted(k for k in shapes if k not in own and k not in ignored)
    if missing:
        raise WeightsError(f"{path}: missing tensor(s) {missing[:5]}")
    if unexpected:
        raise WeightsError(f"{path}: unexpected tensor(s) {unexpected[:5]}")
    for name, shape in own.items():
        if shapes[name] != shape:
            raise WeightsError(
                f"{path}: tensor {name!r} has shape {list(shapes[name])}, expected {list(shape)}"
            )
