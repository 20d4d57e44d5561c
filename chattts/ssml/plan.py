"""The typed plan an SSML document becomes, and the limits a document must keep (docs/ssml.md).

A :class:`Plan` is a flat sequence of items: :class:`Speak` (text read with one voice and one
prosody), :class:`Break` (digital silence between segments) and :class:`Mark` (a named point in
time). The synthesis pipeline speaks it in order; nothing here needs the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

#: Largest document accepted, in bytes of its UTF-8 encoding.
MAX_DOCUMENT_BYTES = 100_000
#: Deepest element nesting accepted (``<speak>`` is depth 1).
MAX_DEPTH = 32
#: Most elements in one document (``<speak>`` included).
MAX_ELEMENTS = 2_000
#: Longest single ``<break>``, in seconds.
MAX_BREAK_SECONDS = 10.0
#: Longest total of all ``<break>`` silences of one document, in seconds.
MAX_TOTAL_BREAK_SECONDS = 120.0

#: Bounds of the composed prosody of any text (nested ``<prosody>`` and ``<emphasis>``
#: included): a tempo factor, semitones and decibels. Volume may also be ``-inf`` (silent).
RATE_RANGE = (0.25, 4.0)
PITCH_RANGE = (-12.0, 12.0)
VOLUME_RANGE = (-40.0, 20.0)


@dataclass(frozen=True)
class Prosody:
    """How a segment's audio is changed after the model generated it.

    Attributes:
        rate: tempo factor with the pitch kept; 2.0 = twice as fast (duration halved).
        pitch: shift in semitones (positive = higher).
        volume: gain in dB; ``-inf`` = silent (the words still take their time).
    """

    rate: float = 1.0
    pitch: float = 0.0
    volume: float = 0.0

    def then(self, inner: Prosody) -> Prosody:
        """This prosody with ``inner`` applied inside it: rates multiply, semitones and
        decibels add."""
        return Prosody(self.rate * inner.rate, self.pitch + inner.pitch, self.volume + inner.volume)

    @property
    def neutral(self) -> bool:
        """True when the audio is left as generated."""
        return self == Prosody()


@dataclass(frozen=True)
class Speak:
    """Text spoken with one voice and one prosody (one or more sentences).

    Attributes:
        text: what the model reads, before the pipeline's text normalisation; ChatTTS tokens
            such as ``[uv_break]`` and ``[laugh]`` are kept as written.
        caption: what captions show: ``<sub>``'s alias, spelled letters, the written form of
            numbers and dates; no ``[tokens]``.
        voice: a voice spec (a library name, a mix ``"a*0.7+b*0.3"``, ``seed_N`` or a speaker
            string), or None for the caller's default voice.
        lang: ``"en"``, ``"zh"`` or None (detected by the normaliser): the normaliser's
            language, from ``xml:lang`` or ``<lang>``.
        prosody: changes applied to the generated audio.
        refine_prompt: the refine pass's prompt (``"[oral_2][laugh_0][break_4]"``) from the
            ChatTTS controls, or None for the caller's.
        speed: ChatTTS's ``[speed_N]`` code prompt (0-9), or None for the caller's.
        normalize: False when ``<say-as>`` already wrote every word to be spoken (the
            normaliser would have nothing to do).
    """

    text: str
    caption: str
    voice: Optional[str] = None
    lang: Optional[str] = None
    prosody: Prosody = Prosody()
    refine_prompt: Optional[str] = None
    speed: Optional[int] = None
    normalize: bool = True


@dataclass(frozen=True)
class Break:
    """Digital silence of ``seconds`` inserted between segments (not a model token)."""

    seconds: float


@dataclass(frozen=True)
class Mark:
    """A named point in time: the start of what follows (``<mark name=...>``)."""

    name: str


Item = Union[Speak, Break, Mark]


@dataclass(frozen=True)
class Plan:
    """What a document says, in order.

    Attributes:
        items: the :class:`Speak`, :class:`Break` and :class:`Mark` items.
        lang: the document's language (``xml:lang`` of ``<speak>``: ``"en"``, ``"zh"``) or None.
    """

    items: tuple[Item, ...] = ()
    lang: Optional[str] = None

    @property
    def text(self) -> str:
        """The spoken text of every :class:`Speak` item, joined by spaces."""
        return " ".join(i.text for i in self.items if isinstance(i, Speak))

    @property
    def caption(self) -> str:
        """The captions of every :class:`Speak` item, joined by spaces."""
        return " ".join(i.caption for i in self.items if isinstance(i, Speak) and i.caption)

    @property
    def break_seconds(self) -> float:
        """Total silence of the :class:`Break` items, in seconds."""
        return sum(i.seconds for i in self.items if isinstance(i, Break))
