"""Exceptions raised by chattts.

Every error the library raises on purpose derives from :class:`ChatTTSError`, and also from the
builtin exception a caller would naturally catch (``ValueError``, ``FileNotFoundError``...).
"""

from __future__ import annotations


class ChatTTSError(Exception):
    """Base class of every error raised by chattts."""


class AssetError(ChatTTSError, OSError):
    """A model file is missing, unreadable or does not match what the model expects."""


class AssetNotFoundError(AssetError, FileNotFoundError):
    """A required model file does not exist."""


class ChecksumMismatchError(AssetError):
    """A model file's SHA256 differs from the official one."""

    def __init__(self, path: str, expected: str, found: str) -> None:
        super().__init__(
            f"{path}: SHA256 mismatch (expected {expected}, found {found}); "
            "the file is corrupt or not the official checkpoint "
            "(pass verify=False to load other checkpoints)"
        )
        self.path, self.expected, self.found = path, expected, found


class WeightsError(AssetError, ValueError):
    """A weights file has missing, unexpected or wrongly shaped tensors, or cannot be parsed."""


class DownloadError(ChatTTSError, ConnectionError):
    """Fetching the weights from the Hugging Face Hub failed."""


class NotLoadedError(ChatTTSError, RuntimeError):
    """A method that needs the models was called before :meth:`chattts.Chat.load`."""


class SpeakerError(ChatTTSError, ValueError):
    """A speaker string or speaker sample cannot be decoded."""


class TextError(ChatTTSError, ValueError):
    """Text input or a text resource (such as a homophone table) is invalid."""
