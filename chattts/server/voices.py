"""The server's voices: OpenAI's names, the voices file or the voice library, resolved by the
one resolver (:class:`chattts.voices.VoiceResolver`) into ``InferCodeParams`` fields.

A request's ``voice`` is a named voice, ``seed_N``, a mix of those (at most
:data:`~chattts.voices.MAX_MIX_TERMS` terms) or a speaker string, at most
:data:`~chattts.voices.MAX_VOICE_CHARS` characters (docs/limits.md). A named voice made
from a recording (``chattts voice add NAME --audio ...``) speaks through its speaker sample;
in a mix it is refused with a 400 that says why.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Union

from ..errors import RequestError, UnknownVoiceError, VoicesError
from ..voices import MappingTable, Voice, VoiceResolver, read_voices

if TYPE_CHECKING:
    from ..voices import VoiceLibrary
    from .schemas import VoiceId

logger = logging.getLogger("chattts.server")

#: OpenAI's built-in voice names, each mapped to the voice of a fixed seed unless the voices
#: file defines it.
OPENAI_VOICES: dict[str, int] = {
    name: 1000 + i
    for i, name in enumerate(
        (
            "alloy",
            "ash",
            "ballad",
            "coral",
            "echo",
            "fable",
            "nova",
            "onyx",
            "sage",
            "shimmer",
            "verse",
            "marin",
            "cedar",
        )
    )
}

#: A named voice as a voices dict gives it: a seed, a speaker string or a :class:`Voice`.
NamedVoice = Union[int, str, Voice]


@dataclass(frozen=True)
class VoiceInfo:
    """A named voice as ``GET /v1/audio/voices`` lists it."""

    name: str
    voice: Voice

    @property
    def kind(self) -> str:
        """``"speaker"``, ``"sample"`` (made from a recording) or ``"seed"``."""
        if self.voice.sample is not None:
            return "sample"
        return "speaker" if self.voice.speaker is not None else "seed"

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.name, "object": "voice", "name": self.name}
        out["kind"] = self.kind
        if self.kind == "seed":
            out["seed"] = self.voice.seed
        return out


class Voices:
    """Named voices (OpenAI's names, then those of the voices file, folder or library) and the
    resolver of a request's ``voice``.

    Args:
        named: name -> seed, speaker string or :class:`Voice` (a speaker sample with its
            transcript for a voice made from a recording); each is checked here.
        hidden_size, num_vq: the model's, checked against every speaker string and sample.
        draw: seed -> speaker string (``Chat.sample_random_speaker``); needed for seed voices.

    Raises:
        VoicesError: a bad entry (the message names the voice).
    """

    def __init__(
        self,
        named: Optional[Mapping[str, NamedVoice]] = None,
        hidden_size: int = 768,
        draw: Optional[Callable[[Optional[int]], str]] = None,
        num_vq: Optional[int] = None,
    ) -> None:
        table: dict[str, Voice] = {n: Voice(seed=s) for n, s in OPENAI_VOICES.items()}
        checker = VoiceResolver(hidden_size=hidden_size, num_vq=num_vq)
        for name, value in (named or {}).items():
            if not isinstance(name, str) or not name.strip():
                raise VoicesError(f"voice names must be non-empty strings, not {name!r}")
            try:
                voice = checker.voice(value if isinstance(value, Voice) else _voice(value))
            except VoicesError as e:
                raise VoicesError(f"voice {name!r}: {e}") from e
            table[name] = voice
        #: name -> :class:`Voice` (a seed, a speaker string, or a sample and its transcript)
        self.table = table
        self.hidden_size = hidden_size
        self.resolver = VoiceResolver(
            MappingTable(table), draw=draw, hidden_size=hidden_size, num_vq=num_vq
        )

    @classmethod
    def load(
        cls,
        source: Union[None, str, os.PathLike[str], Mapping[str, object]],
        hidden_size: int,
        draw: Optional[Callable[[Optional[int]], str]] = None,
        library: Optional[VoiceLibrary] = None,
        num_vq: Optional[int] = None,
    ) -> Voices:
        """From a dict (name -> seed, speaker string or :class:`Voice`), a path (JSON file or
        folder: every entry must be usable), or None: then the voices of ``library``
        (:meth:`from_library`), if given."""
        if source is None:
            if library is not None:
                return cls.from_library(library, hidden_size, draw, num_vq)
            return cls(None, hidden_size, draw, num_vq)
        if isinstance(source, Mapping):
            return cls(dict(source), hidden_size, draw, num_vq)
        return cls(read_voices(source), hidden_size, draw, num_vq)

    @classmethod
    def from_library(
        cls,
        library: VoiceLibrary,
        hidden_size: int,
        draw: Optional[Callable[[Optional[int]], str]] = None,
        num_vq: Optional[int] = None,
    ) -> Voices:
        """OpenAI's voices and those of a voice library (what ``chattts voice add`` saves).

        A library voice this model cannot speak with (a speaker or a sample of a model of
        another size) is left out with a warning, as is a file that cannot be read; a missing
        folder holds none.
        """
        found = read_voices(library.path) if os.path.lexists(library.path) else {}
        named = {}
        for name, voice in found.items():
            try:
                cls({name: voice}, hidden_size, None, num_vq)
            except VoicesError as e:
                logger.warning("voice library %s: %s: left out", library.path, e)
                continue
            named[name] = voice
        return cls(named, hidden_size, draw, num_vq)

    def list(self) -> list[VoiceInfo]:
        return [VoiceInfo(n, v) for n, v in sorted(self.table.items())]

    def fields(self, voice: Union[str, VoiceId]) -> dict[str, Any]:
        """A request's ``voice`` (a str, or ``{"id": ...}``) -> ``InferCodeParams`` fields
        (``spk_emb``; ``spk_smp`` + ``txt_smp`` for a voice made from a recording).

        Raises:
            RequestError: 400 ``voice_not_found`` (naming the unknown voice) or
                ``invalid_voice`` (a malformed or too long mix, a bad speaker string, a sample
                voice in a mix).
        """
        spec = getattr(voice, "id", voice)
        try:
            return self.resolver.fields(spec)
        except UnknownVoiceError as e:
            raise RequestError(str(e), "voice", "voice_not_found") from e
        except VoicesError as e:
            raise RequestError(f"invalid voice: {e}", "voice", "invalid_voice") from e


def _voice(value: Any) -> Voice:
    """A voices-dict value: a seed, else a speaker string (checked by the resolver)."""
    return Voice(speaker=value) if isinstance(value, str) else Voice(seed=value)


__all__ = ["OPENAI_VOICES", "VoiceInfo", "Voices"]
