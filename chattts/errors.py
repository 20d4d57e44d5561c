"""Exceptions raised by chattts.

Every error the library raises on purpose derives from :class:`ChatTTSError`, and also from the
builtin exception a caller would naturally catch (``ValueError``, ``FileNotFoundError``...).
Every exception class of the package is defined here; the modules that raise one re-export it
under its old import path (``chattts.audio.AudioError``, ``chattts.dia.script.ScriptError``...).
Warnings derive from :class:`ChatTTSWarning` (a ``UserWarning``).
"""

from __future__ import annotations

from typing import Any, Optional


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


class EmptyInputError(TextError):
    """A text with nothing to speak: empty, or nothing but emoji, punctuation or pauses once
    normalised (docs/text.md, "Nothing to speak"). Never answered with audio made from nothing.

    Attributes:
        text: the text as given; ``index``: its position in a list of texts (None for one
        text).
    """

    def __init__(self, text: str, index: Optional[int] = None) -> None:
        shown = text if len(text) <= 40 else text[:40] + "…"
        where = "" if index is None else f" (text {index})"
        super().__init__(
            f"nothing to speak in {shown!r}{where}: once normalised it holds no word the "
            "model can read (emoji, punctuation and symbols alone are not speech)"
        )
        self.text, self.index = text, index


class ParameterError(ChatTTSError, ValueError):
    """A generation parameter outside its allowed range (the message names field and range)."""


class InputTypeError(ChatTTSError, TypeError):
    """An argument of the wrong type (text that is not a str or a list of str, a parameter
    that is not a number)."""


class UsageError(ChatTTSError, ValueError):
    """A mistake in what a user gave: a command-line option, or a file it names (one line)."""


class VoicesError(UsageError):
    """A voices file or folder that is missing, not valid JSON, or holds a bad entry."""


class UnknownVoiceError(VoicesError):
    """A voice name that no table (library, voices file, the server's names) holds.

    Attributes:
        name: the unknown name.
    """

    def __init__(self, message: str, name: Optional[str] = None) -> None:
        super().__init__(message)
        self.name = name


class MissingDependencyError(ChatTTSError, ImportError):
    """An optional package is not installed; the message names the ``pip install`` to run."""


class AudioError(ChatTTSError, ValueError):
    """Audio that cannot be read, written or encoded (bad file, shape, format...)."""


class AudioFileNotFoundError(AudioError, FileNotFoundError):
    """An audio file that does not exist."""


class CaptionError(UsageError):
    """Captions that cannot be written or read: an unknown format or file suffix (the message
    names the known ones), or a caption file that cannot be parsed."""


class ScriptError(ChatTTSError, ValueError):
    """A dialogue script that cannot be spoken (empty, a turn without text, text before the
    first speaker tag)."""


class UnsupportedOptionError(ChatTTSError, ValueError):
    """An option of Dia's API that the ChatTTS engine does not offer (``cfg_scale``)."""


class BackendUnavailable(ChatTTSError, RuntimeError):
    """A built-in backend cannot run here: a text normaliser's package is missing or failed to
    load, or torch has no int8 kernel library."""


class RequestError(ChatTTSError, ValueError):
    """A bad request to the speech server, answered with an OpenAI-shaped error (4xx).

    Attributes:
        message: what is wrong; ``param``: the request field at fault (or None);
        ``code``: a machine-readable code; ``status``: the HTTP status; ``type``: OpenAI's
        error type.
    """

    def __init__(
        self,
        message: str,
        param: Optional[str] = None,
        code: Optional[str] = None,
        status: int = 400,
        type: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.message, self.param, self.code, self.status, self.type = (
            message,
            param,
            code,
            status,
            type,
        )

    def body(self) -> dict[str, Any]:
        """``{"error": {"message", "type", "param", "code"}}``, the OpenAI error body."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class SsmlError(ChatTTSError, ValueError):
    """An SSML document that cannot be spoken: malformed XML, a forbidden construct (a DTD, an
    entity, ``<audio>``), a bad attribute value or a limit exceeded (docs/ssml.md).

    Attributes:
        reason: what is wrong, without the position; ``line``, ``column``: where, both counted
        from 1 (None when the error is not tied to a position). The message is
        ``"line 3, column 12: unknown prosody rate 'zoom'"``.
    """

    def __init__(
        self, reason: str, line: Optional[int] = None, column: Optional[int] = None
    ) -> None:
        where = f"line {line}, column {column}: " if line is not None else ""
        super().__init__(where + reason)
        self.reason, self.line, self.column = reason, line, column


class JobFailed(ChatTTSError, RuntimeError):
    """The server's worker could not synthesise a request (sent to its queue instead of audio).

    ``cause``: the exception that failed it (an :class:`EmptyInputError` is the client's
    fault, answered with a 400), or None.
    """

    def __init__(self, message: str, cause: Optional[BaseException] = None) -> None:
        super().__init__(message)
        self.cause = cause


class QueueFullError(ChatTTSError, RuntimeError):
    """Too many requests are waiting for the server's worker."""


class BatchFullError(ChatTTSError, RuntimeError):
    """A continuous-batching run has no free slot for another row (``Run.add``)."""


class ReplicaUnhealthy(ChatTTSError, RuntimeError):
    """A server replica lost its model or its worker thread (Ray Serve replaces it)."""


class DocumentError(UsageError):
    """A document to narrate that cannot be read: an unknown type, no text, text that is not
    UTF-8, a file over the size limit, an EPUB that is not a zip or holds a zip bomb."""


class NarrationError(ChatTTSError, RuntimeError):
    """A narration that cannot go on: a segment that gave no audio after every redraw."""


class NarrationCancelled(NarrationError):
    """A narration stopped by :meth:`chattts.narrate.Narration.cancel` (its progress is kept)."""


class StoreError(ChatTTSError, OSError):
    """A narration's output folder or progress store cannot be written or read (a full disk,
    a read-only folder, another narration running in the same folder); what was done is kept."""


class ChatTTSWarning(UserWarning):
    """Base class of the warnings chattts issues."""


class LoadFailedWarning(ChatTTSWarning):
    """``Chat.load()`` failed and returned False (the reference's contract); the warning says
    why, so that the reason is seen without any logging set up."""


class ScriptWarning(ChatTTSWarning):
    """Something in a dialogue script was dropped (an unknown cue or tag)."""


class SsmlWarning(ChatTTSWarning):
    """Part of an SSML document is not applied as written (an unknown element, whose text is
    spoken; a ``<phoneme>``, whose text is spoken instead of its phonemes...)."""


__all__ = [
    "AssetError",
    "AssetNotFoundError",
    "AudioError",
    "AudioFileNotFoundError",
    "BackendUnavailable",
    "CaptionError",
    "ChatTTSError",
    "ChatTTSWarning",
    "ChecksumMismatchError",
    "DocumentError",
    "DownloadError",
    "EmptyInputError",
    "InputTypeError",
    "JobFailed",
    "LoadFailedWarning",
    "MissingDependencyError",
    "NarrationCancelled",
    "NarrationError",
    "NotLoadedError",
    "ParameterError",
    "QueueFullError",
    "ReplicaUnhealthy",
    "RequestError",
    "ScriptError",
    "ScriptWarning",
    "SpeakerError",
    "SsmlError",
    "SsmlWarning",
    "StoreError",
    "TextError",
    "UnknownVoiceError",
    "UnsupportedOptionError",
    "UsageError",
    "VoicesError",
    "WeightsError",
]
