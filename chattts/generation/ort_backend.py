"""The GPT on ONNX Runtime (CPU): the converted graph (:mod:`.ort_convert`) behind
:class:`chattts.generation.backend.GPTBackend`.

Per generation, a session allocates the keys and values of every layer for its rows and binds
each buffer as both the layer's past and its present (I/O binding): ``GroupQueryAttention``
writes a step's keys and values in place, so nothing is copied per step. A prompt's run writes
every position of its rows' buffers, so the buffers hold :data:`FIRST_POSITIONS` positions at
first and double (copying what was written) when the longest row needs more, up to the
session's capacity: a run sized for long answers keeps in memory what its rows use, not its
capacity. Embeddings go in and hidden states come out through the memory of torch tensors;
``seqlens_k`` (each row's length − 1) and ``total_sequence_length`` are two small arrays
updated in place. Rows are kept in front of the buffers (a row that leaves is overwritten by
the last one), so a step binds the first ``rows`` of every buffer; a joining row's prompt runs
on its own rows of the buffers (bound at their offset) while the other rows keep theirs.
Prompts are right-padded (rotary positions 0 … L−1 per row, as the torch engine gives) and each
row's hidden state is read at its last real token.
"""

from __future__ import annotations

import logging
from typing import Optional

import numpy as np
import torch

from ..config import GPTConfig
from ..errors import MissingDependencyError
from ..model.gpt import right_aligned
from ..runtime import configured_threads
from .ort_convert import INSTALL_HINT

logger = logging.getLogger("chattts")

#: Positions per row that a session's KV buffers hold at first (then doubled as needed).
FIRST_POSITIONS = 512


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
        threads: ONNX Runtime's intra-op threads (default: the process's configured torch
            thread count, :func:`chattts.runtime.configured_threads`).
        spinning: let idle ONNX Runtime threads spin (off: they sleep, which keeps a busy
            or shared machine fast; docs/engine.md has the measurement).

    During a generation step torch (which does the step's small work: embeddings, heads,
    sampling) runs on one thread (:attr:`torch_threads`, applied by the engine's run through
    :func:`chattts.runtime.gpt_threads`): its OpenMP threads would otherwise spin against ONNX
    Runtime's (measured: 52 → 76 steps/s quiet with spinning, 22 → 38 under load without).
    Between steps, where the caller decodes audio, torch has its configured threads.
    """

    name = "onnxruntime"
    dtype = torch.float32
    fixed_shapes = False
    #: torch's threads while a step runs (the engine's own work around ONNX Runtime's)
    torch_threads: Optional[int] = 1

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
        options.intra_op_num_threads = threads or configured_threads()
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


class OrtSession:
    """One generation on :class:`OrtBackend`: its KV buffers, its rows and their bindings."""

    def __init__(self, backend: OrtBackend, batch: int, positions: int) -> None:
        self._backend = backend
        self._run = backend.session.run_with_iobinding
        self._io = backend.session.io_binding()
        self.max_rows, self.positions = batch, positions
        #: (B, n_kv, P, d) float32 per layer, P ≤ ``positions`` (see :meth:`_fit`)
        self.keys: list[np.ndarray] = []
        self.values: list[np.ndarray] = []
        self.rows = 0
        self._allocate(min(positions, FIRST_POSITIONS))
        self.seqlens = np.zeros(batch, np.int32)  # each row's length − 1
        self.total = np.zeros((), np.int32)
        self._bound = -1  # the rows the KV inputs are bound for (-1: a prompt's rows)
        self._step_out = torch.empty(batch, 1, backend.hidden_size)
        self._closed = False

    def _allocate(self, held: int) -> None:
        """KV buffers of ``held`` positions per row, holding what the old ones held."""
        b = self._backend
        shape = (self.max_rows, b.num_kv_heads, held, b.head_dim)
        old = (*self.keys, *self.values)
        new = [np.zeros(shape, np.float32) for _ in range(2 * b.num_layers)]
        if old:
            n = old[0].shape[2]
            for src, dst in zip(old, new, strict=True):
                dst[: self.rows, :, :n] = src[: self.rows]
        self.keys, self.values = new[: b.num_layers], new[b.num_layers :]
        self.held = held
        self._row_bytes = self.keys[0][0].nbytes
        self._bound = -1

    def _fit(self, needed: int) -> None:
        """Make room for ``needed`` positions per row (at most the session's capacity)."""
        if needed > self.held:
            self._allocate(min(self.positions, max(needed, 2 * self.held)))

    def _bind_rows(self, start: int, count: int) -> None:
        """Bind the KV buffers (past = present) and ``seqlens_k`` of rows [start, start+count)."""
        io, offset = self._io, start * self._row_bytes
        for i in range(self._backend.num_layers):
            for kind, buffers in (("key", self.keys), ("value", self.values)):
                buf = buffers[i]
                shape = [count, *buf.shape[1:]]
                ptr = buf.ctypes.data + offset
                io.bind_input(f"past_key_values.{i}.{kind}", "cpu", 0, np.float32, shape, ptr)
                io.bind_output(f"present.{i}.{kind}", "cpu", 0, np.float32, shape, ptr)
        ptr = self.seqlens.ctypes.data + start * self.seqlens.itemsize
        io.bind_input("seqlens_k", "cpu", 0, np.int32, [count], ptr)
        io.bind_input("total_sequence_length", "cpu", 0, np.int32, [], self.total.ctypes.data)

    def _forward(self, embeds: torch.Tensor, out: torch.Tensor) -> None:
        """embeds (B, T, H) float32 contiguous -> ``out`` (B, T, H), through shared memory."""
        io = self._io
        shape = list(embeds.shape)
        io.bind_input("inputs_embeds", "cpu", 0, np.float32, shape, embeds.data_ptr())
        io.bind_output("hidden_states", "cpu", 0, np.float32, shape, out.data_ptr())
        self._run(io)

    def prefill(self, embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """New rows: embeds (k, T, H), attention_mask (k, T) -> (k, H) at each row's last real
        token; the prompt runs on the rows' own part of the buffers."""
        k, t, _ = embeds.shape
        start = self.rows
        if start + k > self.max_rows or t > self.positions:
            raise ValueError(
                f"{k} prompts of {t} positions after {start} rows in a session of "
                f"{self.max_rows} rows and {self.positions} positions"
            )
        self._fit(t)
        embeds, lengths = right_aligned(embeds, attention_mask)
        embeds = embeds.float().contiguous()
        out = torch.empty_like(embeds)
        self.seqlens[start : start + k] = (lengths - 1).to(torch.int32).numpy()
        self.total[()] = t
        self._bind_rows(start, k)
        self._bound = -1
        self._forward(embeds, out)
        self.rows += k
        return out[torch.arange(k), lengths - 1]

    def decode(self, embeds: torch.Tensor) -> torch.Tensor:
        """One step of every row: embeds (rows, 1, H) -> (rows, H); each row's token goes after
        its last one."""
        n = self.rows
        if embeds.shape[0] != n:
            raise ValueError(f"{embeds.shape[0]} inputs for {n} rows")
        lengths = self.seqlens[:n]
        total = int(lengths.max()) + 2
        if total > self.positions:
            raise ValueError(f"the session's rows are full ({self.positions} positions)")
        self._fit(total)
        if self._bound != n:
            self._bind_rows(0, n)
            self._bound = n
        np.add(lengths, 1, out=lengths)
        self.total[()] = total
        out = self._step_out[:n]
        self._forward(embeds.float().contiguous(), out)
        return out[:, 0]

    def remove(self, row: int) -> None:
        """Row ``row`` leaves: the last row's keys and values (the positions written) move into
        its place."""
        last = self.rows - 1
        if not 0 <= row <= last:
            raise IndexError(f"row {row} of {self.rows}")
        if row != last:
            n = int(self.seqlens[last]) + 1
            for buf in (*self.keys, *self.values):
                buf[row, :, :n] = buf[last, :, :n]
            self.seqlens[row] = self.seqlens[last]
        self.rows = last

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.keys, self.values = [], []
        self._io.clear_binding_inputs()
        self._io.clear_binding_outputs()
