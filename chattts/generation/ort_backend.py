"""The GPT on ONNX Runtime (CPU): the converted graph (:mod:`.ort_convert`) behind
:class:`chattts.generation.backend.GPTBackend`.

Per generation, a session allocates the keys and values of every layer once, for the prompt
and every step, and binds each buffer as both the layer's past and its present (I/O binding):
``GroupQueryAttention`` writes a step's keys and values in place, so nothing is copied per
step. Embeddings go in and hidden states come out through the memory of torch tensors;
``seqlens_k`` (each row's length − 1) and ``total_sequence_length`` are two small arrays
updated in place. Prompts are right-padded (rotary positions 0 … L−1 per row, as the torch
engine gives left-padded rows) and each row's hidden state is read at its last real token.
"""

from __future__ import annotations

import logging
import threading
from typing import Optional

import numpy as np
import torch

from ..config import GPTConfig
from ..errors import MissingDependencyError
from .ort_convert import INSTALL_HINT

logger = logging.getLogger("chattts")


def import_onnxruntime():
    """The ``onnxruntime`` module, or an error naming the install that fixes it."""
    try:
        import onnxruntime
    except ImportError as e:
        raise MissingDependencyError(
            f"backend='onnxruntime' needs the onnxruntime package: {INSTALL_HINT}"
        ) from e
    return onnxruntime


class OrtBackend:
    """The converted GPT in one ONNX Runtime session (CPU).

    Args:
        graph_path: ``model.onnx`` of a cache entry.
        num_layers, num_kv_heads, head_dim, hidden_size: the body's shape.
        max_positions: the rotary table's length (positions of prompt + steps must fit).
        threads: ONNX Runtime's intra-op threads (default: torch's thread count).
        spinning: let idle ONNX Runtime threads spin (off: they sleep, which keeps a busy
            or shared machine fast; docs/engine.md has the measurement).

    While a generation runs, torch (which does the step's small work: embeddings, heads,
    sampling) runs on one thread: its OpenMP threads would otherwise spin against ONNX
    Runtime's (measured: 52 → 76 steps/s quiet with spinning, 22 → 38 under load without).
    The thread count is restored when the last open session closes.
    """

    name = "onnxruntime"
    dtype = torch.float32
    fixed_shapes = False

    def __init__(
        self,
        graph_path: str,
        *,
        num_layers: int,
        num_kv_heads: int,
        head_dim: int,
        hidden_size: int,
        max_positions: int,
        threads: Optional[int] = None,
        spinning: bool = False,
    ) -> None:
        ort = import_onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        spin = "1" if spinning else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", spin)
        options.log_severity_level = 3
        # no memory arena: a prompt's activations are freed after the prefill instead of
        # staying in the arena (measured: 65 MB less at batch 8, the same speed)
        options.enable_cpu_mem_arena = False
        self.graph_path = graph_path
        self.session = ort.InferenceSession(graph_path, options, providers=["CPUExecutionProvider"])
        self.num_layers, self.num_kv_heads = num_layers, num_kv_heads
        self.head_dim, self.hidden_size = head_dim, hidden_size
        self.max_positions = max_positions
        self._torch_threads_lock = threading.Lock()
        self._open_sessions = 0
        self._torch_threads = 0
        names = {i.name for i in self.session.get_inputs()}
        for needed in ("inputs_embeds", "seqlens_k", "total_sequence_length"):
            if needed not in names:
                raise ValueError(f"{graph_path}: not a converted GPT (no input {needed!r})")

    @classmethod
    def from_graph(cls, graph_path: str, config: GPTConfig, **kwargs) -> OrtBackend:
        """A backend for a converted graph of the GPT ``config`` describes."""
        return cls(
            graph_path,
            num_layers=config.num_hidden_layers,
            num_kv_heads=config.num_key_value_heads,
            head_dim=config.head_dim or config.hidden_size // config.num_attention_heads,
            hidden_size=config.hidden_size,
            max_positions=config.max_position_embeddings,
            **kwargs,
        )

    def open(self, batch: int, positions: int) -> OrtSession:
        if positions > self.max_positions:
            raise ValueError(
                f"prompt + max_new_token = {positions} positions; the model's rotary table has "
                f"{self.max_positions} (max_position_embeddings)"
            )
        return OrtSession(self, batch, positions)

    def enter_generation(self) -> None:
        """A session opens: torch goes to one thread (the first one saves its count)."""
        with self._torch_threads_lock:
            if self._open_sessions == 0:
                self._torch_threads = torch.get_num_threads()
                torch.set_num_threads(1)
            self._open_sessions += 1

    def leave_generation(self) -> None:
        """A session closes: the last one restores torch's thread count."""
        with self._torch_threads_lock:
            self._open_sessions -= 1
            if self._open_sessions == 0:
                torch.set_num_threads(self._torch_threads)


class OrtSession:
    """One generation on :class:`OrtBackend`: its KV buffers and their bindings."""

    def __init__(self, backend: OrtBackend, batch: int, positions: int) -> None:
        self._backend = backend
        self._run = backend.session.run_with_iobinding
        self._io = backend.session.io_binding()
        shape = (batch, backend.num_kv_heads, positions, backend.head_dim)
        #: (B, n_kv, positions, d) float32 per layer: keys, then values
        self.keys = [np.zeros(shape, np.float32) for _ in range(backend.num_layers)]
        self.values = [np.zeros(shape, np.float32) for _ in range(backend.num_layers)]
        self.seqlens = np.zeros(batch, np.int32)  # each row's length − 1
        self.total = np.zeros((), np.int32)
        self.batch = batch
        self._step_out = torch.empty(batch, 1, backend.hidden_size)
        self._bind_state()
        self._closed = False
        backend.enter_generation()

    def _bind_state(self) -> None:
        """Bind the KV buffers (past = present) and the length arrays for ``self.batch`` rows."""
        io, b = self._io, self.batch
        for i in range(self._backend.num_layers):
            for kind, buffers in (("key", self.keys), ("value", self.values)):
                buf = buffers[i]
                shape = [b, *buf.shape[1:]]
                ptr = buf.ctypes.data
                io.bind_input(f"past_key_values.{i}.{kind}", "cpu", 0, np.float32, shape, ptr)
                io.bind_output(f"present.{i}.{kind}", "cpu", 0, np.float32, shape, ptr)
        io.bind_input("seqlens_k", "cpu", 0, np.int32, [b], self.seqlens.ctypes.data)
        io.bind_input("total_sequence_length", "cpu", 0, np.int32, [], self.total.ctypes.data)

    def _forward(self, embeds: torch.Tensor, out: torch.Tensor) -> None:
        """embeds (B, T, H) float32 contiguous -> ``out`` (B, T, H), through shared memory."""
        io = self._io
        shape = list(embeds.shape)
        io.bind_input("inputs_embeds", "cpu", 0, np.float32, shape, embeds.data_ptr())
        io.bind_output("hidden_states", "cpu", 0, np.float32, shape, out.data_ptr())
        self._run(io)

    def prefill(self, embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """embeds (B, T, H), attention_mask (B, T) -> (B, H) at each row's last real token."""
        b, t, _ = embeds.shape
        mask = attention_mask.bool()
        lengths = mask.sum(-1)
        if bool((lengths < t).any()):  # right-align: real tokens first, positions 0 … L−1
            order = torch.argsort((~mask).to(torch.int8), dim=-1, stable=True)
            embeds = embeds.gather(1, order[..., None].expand_as(embeds))
        embeds = embeds.float().contiguous()
        out = torch.empty_like(embeds)
        self.seqlens[:] = (lengths - 1).to(torch.int32).numpy()
        self.total[()] = t
        self._forward(embeds, out)
        return out[torch.arange(b), lengths - 1]

    def decode(self, embeds: torch.Tensor) -> torch.Tensor:
        """One step: embeds (B, 1, H) -> (B, H); each row's token goes after its last one."""
        np.add(self.seqlens, 1, out=self.seqlens)
        self.total[()] = self.seqlens.max() + 1
        embeds = embeds.float().contiguous()
        self._forward(embeds, self._step_out)
        return self._step_out[:, 0]

    def select(self, rows: torch.Tensor) -> None:
        """Keep ``rows`` (ascending indices): moved to the front of every buffer in place."""
        keep = rows.tolist()
        for dst, src in enumerate(keep):
            if dst != src:
                for buf in (*self.keys, *self.values):
                    buf[dst] = buf[src]
        self.seqlens[: len(keep)] = self.seqlens[keep]
        self.batch = len(keep)
        self.seqlens = self.seqlens[: self.batch]
        self._step_out = self._step_out[: self.batch]
        self._bind_state()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.keys, self.values = [], []
        self._io.clear_binding_inputs()
        self._io.clear_binding_outputs()
        self._backend.leave_generation()
