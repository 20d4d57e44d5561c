"""The generation loop shared by the refine and code passes (static batches and continuous
batching), its sampling rules, the GPT backend seam and the builder that applies the engine's
options."""

from .backend import GPTBackend, GPTSession, TorchBackend
from .build import build_backend, build_engine
from .engine import Engine, GenerationState, Interrupt, PassHeads
from .run import RowEvent, RowOutput, Run
from .sampling import ItemSampling, RowSampler

__all__ = [
    "Engine",
    "GenerationState",
    "Interrupt",
    "PassHeads",
    "Run",
    "RowEvent",
    "RowOutput",
    "ItemSampling",
    "RowSampler",
    "GPTBackend",
    "GPTSession",
    "TorchBackend",
    "build_backend",
    "build_engine",
]
