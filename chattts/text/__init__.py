"""Text front end: normalisation and sentence splitting (language-aware, above the models)."""

from .normalizer import Normalizer
from .split import split_sentences

__all__ = ["Normalizer", "split_sentences"]
