"""The voices of the page: what the Voice list offers and how every choice is resolved.

The list's values are voice specs of :class:`chattts.voices.VoiceResolver`'s grammar, so the
page, the CLI and the server read them alike: ``seed_2`` (the default) and the other preset
seeds, the names of a voices file given to :func:`chattts.webui.create_ui`, the voice
library's names, mixes (``seed_2*0.5+seed_1111*0.5``, what the Mix button makes) and
:data:`CUSTOM`: the speaker string or the sample recording of the page's "Voice" section.

:class:`PageVoices` is the :class:`~chattts.voices.VoiceTable` the page resolves names in
(the voices file's names first, then the library's) and gives the resolvers: one shared, and
per request one that also knows :data:`CUSTOM`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Optional, Union

from ..errors import ChatTTSError
from ..voices import MappingTable, Voice, VoiceLibrary, VoiceResolver

if TYPE_CHECKING:
    from ..chat import Chat

logger = logging.getLogger("chattts.webui")

#: The list's value for the voice of the page's "Voice" section (not a valid voice name, so
#: never a library voice's).
CUSTOM = "(custom)"
#: The default voice: the reference web UI's default seed.
DEFAULT_VOICE = "seed_2"
#: Seeds offered in the list besides the default.
PRESET_SEEDS = (1111, 2222, 3333, 4444, 5555, 6666, 7777, 8888, 9999)

#: (label, value) pairs of a Gradio dropdown.
Choices = list[tuple[str, str]]


class PageVoices:
    """The page's named voices: a voices file's (``named``), then the library's.

    Args:
        chat: the loaded chat (draws seed voices, encodes recordings, gives the model's sizes).
        named: extra voices, name -> :class:`~chattts.voices.Voice`, seed or speaker string.
        library: the voice library, where the page saves voices (default ``chat.voices``).
    """

    def __init__(
        self,
        chat: Chat,
        named: Optional[dict[str, Union[Voice, int, str]]] = None,
        library: Optional[VoiceLibrary] = None,
    ) -> None:
        self.chat = chat
        self.named = MappingTable(named or {})
        self.library = library if library is not None else chat.voices
        self._shared: Optional[tuple[object, VoiceResolver]] = None

    # ---- the VoiceTable protocol ----------------------------------------------------------

    def voice_of(self, name: str) -> Optional[Voice]:
        found = self.named.voice_of(name)
        return found if found is not None else self.library.voice_of(name)

    def known(self) -> str:
        names = sorted({*self.named.voices, *self._library_names()})
        return f"known: {', '.join(names[:20]) or 'none'}" + (
            f" and {len(names) - 20} more" if len(names) > 20 else ""
        )

    # ---- the list -------------------------------------------------------------------------

    def _library_names(self) -> list[str]:
        try:
            return self.library.names()
        except (ChatTTSError, OSError) as e:
            logger.warning("voice library %s: %s", self.library.path, e)
            return []

    def choices(self) -> Choices:
        """The Voice list: the default, the preset seeds, the voices file's and the library's
        names, then :data:`CUSTOM`."""
        out: Choices = [(f"Default ({DEFAULT_VOICE})", DEFAULT_VOICE)]
        out += [(f"seed_{s}", f"seed_{s}") for s in PRESET_SEEDS]
        taken = {v for _, v in out}
        for name in [*self.named.voices, *self._library_names()]:
            if name not in taken:
                out.append((name, name))
                taken.add(name)
        out.append(("Custom: the speaker string or sample of the Voice section", CUSTOM))
        return out

    def mixable(self) -> Choices:
        """The voices the Mix button takes: those with a speaker vector (seeds and speaker
        strings; a voice made from a recording has none)."""
        out: Choices = []
        for label, value in self.choices():
            if value == CUSTOM:
                continue
            voice = self.voice_of(value)
            if voice is None or voice.sample is None or isinstance(voice.speaker, str):
                out.append((label, value))
        return out

    # ---- resolving ------------------------------------------------------------------------

    def resolver(self, custom: Optional[Voice] = None) -> VoiceResolver:
        """A resolver over these voices with the chat's model; with ``custom``, one that also
        resolves :data:`CUSTOM` to it (made for one request)."""
        pipeline = self.chat.pipeline
        if custom is None and self._shared is not None and self._shared[0] is pipeline:
            return self._shared[1]
        table = self if custom is None else _WithCustom(custom, self)
        gpt = pipeline.models.config.gpt
        resolver = VoiceResolver(
            table,
            draw=pipeline.random_speaker,
            encode=self.chat.sample_audio_speaker,
            hidden_size=gpt.hidden_size,
            num_vq=gpt.num_vq,
        )
        if custom is None:
            self._shared = (pipeline, resolver)
        return resolver


class _WithCustom:
    """A :class:`~chattts.voices.VoiceTable`: :data:`CUSTOM` is ``custom``; other names are
    looked up in ``base``."""

    def __init__(self, custom: Voice, base: PageVoices) -> None:
        self.custom, self.base = custom, base

    def voice_of(self, name: str) -> Optional[Voice]:
        return self.custom if name == CUSTOM else self.base.voice_of(name)

    def known(self) -> str:
        return self.base.known()


def custom_voice(speaker: str, sample: str, sample_text: str) -> Voice:
    """The voice of the page's Voice section: its sample recording's code and transcript when
    a sample is given (the sample's voice replaces the speaker string), else its speaker
    string.

    Raises:
        VoicesError: a sample without its transcript, or neither a sample nor a speaker.
    """
    from ..errors import VoicesError

    speaker, sample, sample_text = (x.strip() if x else "" for x in (speaker, sample, sample_text))
    if sample:
        if not sample_text:
            raise VoicesError(
                "the sample recording needs its transcript: type what it says in 'Sample text'"
            )
        return Voice(sample=sample, text=sample_text)
    if speaker:
        return Voice(speaker=speaker)
    raise VoicesError(
        "the Custom voice is empty: paste a speaker string, pick a voice seed or upload a "
        "sample recording in the Voice section"
    )


def mix_spec(a: str, b: str, share: float) -> str:
    """The mix of ``a`` and ``b`` with ``share`` (0–1) of ``b``: ``"a*0.7+b*0.3"``; one of
    them alone at 0 or 1."""
    share = round(min(max(float(share), 0.0), 1.0), 3)
    if share <= 0.0:
        return a
    if share >= 1.0:
        return b
    return f"{a}*{1.0 - share:g}+{b}*{share:g}"


__all__ = [
    "CUSTOM",
    "DEFAULT_VOICE",
    "PRESET_SEEDS",
    "Choices",
    "PageVoices",
    "custom_voice",
    "mix_spec",
]
