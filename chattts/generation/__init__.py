"""The generation loop shared by the refine and code passes, and its sampling rules."""

from .engine import Engine, GenerationState, Interrupt, PassHeads
from .sampling import ItemSampling, RowSampler

__all__ = ["Engine", "GenerationState", "Interrupt", "PassHeads", "ItemSampling", "RowSampler"]
