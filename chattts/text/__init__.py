"""Text front end: normalisation and sentence splitting (language-aware, above the models).

See docs/text.md. ``Normalizer`` makes text readable by the model (numbers and symbols spoken
through NeMo / WeTextProcessing when the ``text`` extra is installed); ``split_sentences`` is
the reference's sentence rule and ``split_text`` adds a length limit.
"""

from .backends import default_cache_dir
from .chars import detect_language, has_speech
from .normalizer import Normalizer, TextError
from .split import DEFAULT_MAX_SPLIT_CHARS, split_sentences, split_text, text_length

__all__ = [
    "DEFAULT_MAX_SPLIT_CHARS",
    "Normalizer",
    "TextError",
    "default_cache_dir",
    "detect_language",
    "has_speech",
    "split_sentences",
    "split_text",
    "text_length",
]
