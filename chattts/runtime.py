"""The one owner of process-wide settings: torch's thread counts and int8 kernel library, and
the environment variables the package sets.

torch's thread count is process-wide state (in torch's OpenMP build each OS thread has its
own count, and a thread started later takes the last count set by anyone), and so is the
library of its quantised kernels. Nothing else in the package changes them, and nothing
changes them at import time (docs/engine.md, "Threads").

* :func:`gpt_threads`: a reference-counted scope around the work of one generation step on a
  backend that runs the GPT outside torch (ONNX Runtime). Inside it, the calling thread runs
  torch on ``threads`` threads (one: torch's OpenMP threads would otherwise spin against ONNX
  Runtime's pool). Leaving it gives the calling thread the process's configured count again,
  before control goes back to the caller, so the audio decoded between steps gets every
  core. The configured count is read when the first user enters and is what every user gets
  back, however generations in several threads or several models overlap.
* :func:`configured_threads`: the process's configured torch thread count (the saved one
  while a scope is active): what ONNX Runtime's intra-op pools are sized from.
* :func:`use_int8_kernels`: selects torch's quantised kernel library (fbgemm / oneDNN) for
  int8 weights.
* :func:`no_gradio_analytics`: Gradio reports usage to its servers unless its environment
  variable says not to; the web UI sets it (unless the user did) before Gradio is imported.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

import torch

from .errors import BackendUnavailable

#: quantised dynamic linear layers need a kernel library; "x86" picks fbgemm / oneDNN per shape
QUANTIZED_ENGINES = ("x86", "fbgemm", "onednn")


class _ThreadOwner:
    """The state behind :func:`gpt_threads` (one per process)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = 0
        self.saved = 0

    def configured(self) -> int:
        with self.lock:
            return self.saved if self.users else torch.get_num_threads()

    @contextlib.contextmanager
    def scope(self, threads: int) -> Iterator[None]:
        with self.lock:
            if self.users == 0:
                self.saved = torch.get_num_threads()
            self.users += 1
        try:
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
            yield
        finally:
            with self.lock:
                self.users -= 1
                restore = self.saved
            if torch.get_num_threads() != restore:
                torch.set_num_threads(restore)


_THREADS = _ThreadOwner()


def gpt_threads(threads: int = 1) -> contextlib.AbstractContextManager[None]:
    """A scope in which the calling thread runs torch on ``threads`` threads (see the module
    docstring); the configured count is restored when it ends, also on errors."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, not {threads}")
    return _THREADS.scope(threads)


def configured_threads() -> int:
    """The process's configured torch thread count (the saved count while a
    :func:`gpt_threads` scope is active anywhere)."""
    return _THREADS.configured()


def active_gpt_scopes() -> int:
    """How many :func:`gpt_threads` scopes are active now (in every thread)."""
    with _THREADS.lock:
        return _THREADS.users


def use_int8_kernels() -> str:
    """Select torch's quantised kernel library for int8 weights (kept if one is selected);
    returns its name.

    Raises:
        BackendUnavailable: this torch has no int8 kernel library.
    """
    supported = torch.backends.quantized.supported_engines
    if torch.backends.quantized.engine in QUANTIZED_ENGINES:
        return torch.backends.quantized.engine
    for name in QUANTIZED_ENGINES:
        if name in supported:
            torch.backends.quantized.engine = name
            return name
    raise BackendUnavailable(f"quantize='int8': no int8 kernel library in this torch ({supported})")


def no_gradio_analytics() -> None:
    """Tell Gradio not to report usage (``GRADIO_ANALYTICS_ENABLED``), unless the user's
    environment already says what to do; called before the web UI imports Gradio."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
