"""Language-blind torch modules of the ChatTTS stack, each loadable and testable alone."""

from .dvae import DVAE, GFSQ, ConvNeXtBlock, ConvStack, Decoder
from .embed import Embed
from .gpt import GPT, KVCache
from .loading import load_module, load_strict, read_safetensors
from .tokenizer import Tokenizer
from .vocos import build_vocos, vocos_decode

__all__ = [
    "DVAE",
    "ConvNeXtBlock",
    "ConvStack",
    "Decoder",
    "GFSQ",
    "Embed",
    "GPT",
    "KVCache",
    "Tokenizer",
    "build_vocos",
    "vocos_decode",
    "load_module",
    "load_strict",
    "read_safetensors",
]
