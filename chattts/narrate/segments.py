"""What a narration says, in which voice, with which seed: settings, segments and their ids
(docs/narrate.md, "Resuming").

A paragraph is cut into segments with the library's splitter
(:func:`chattts.text.split_text`: the reference's sentence rule, then the length limit). Each
segment's id is a hash of its text and of every setting that changes its audio (the voice, the
base seed, the sampling and refine parameters, the model's identity, the finishing), so a
changed paragraph or setting gives new ids to the segments it changes and to no other. The
seed of a segment's draw is derived from the base seed and its id (and the redraw number), so
a segment sounds the same whatever it is batched with and whenever it is rendered.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Optional

from ..errors import ParameterError
from ..params import InferCodeParams, RefineTextParams
from ..text import DEFAULT_MAX_SPLIT_CHARS, split_text
from .documents import Document

#: Fields of the params objects that do not change the audio (or that a segment sets itself).
_NOT_AUDIO = {"show_tqdm", "manual_seed", "spk_emb", "spk_smp", "txt_smp"}
_NOT_AUDIO |= {"stream_batch", "stream_speed", "pass_first_n_batches", "stream_first_batch"}
_NOT_AUDIO |= {"stream_lookahead", "stream_context"}
#: Samples with |x| at most this are trimmed from both ends of a segment (as ``Chat.infer``).
TRIM_THRESHOLD = 1e-5
#: Largest derived seed (``manual_seed`` takes up to 2**63 - 1; 31 bits suit every RNG).
SEED_MASK = 0x7FFF_FFFF


@dataclass(frozen=True)
class NarrationVoice:
    """Who reads: the code pass's voice fields.

    Attributes:
        spk_emb: a speaker string (None with a speaker sample alone).
        spk_smp, txt_smp: a speaker sample and its transcript (voices made from recordings).
        label: how the voice was named (``alice``, ``seed_3``, ``a*0.7+b*0.3``), for the
            manifest; it does not change the audio.
    """

    spk_emb: Optional[str] = None
    spk_smp: Optional[str] = None
    txt_smp: Optional[str] = None
    label: str = ""

    def fields(self) -> dict[str, Optional[str]]:
        """The ``InferCodeParams`` fields of this voice."""
        return {"spk_emb": self.spk_emb, "spk_smp": self.spk_smp, "txt_smp": self.txt_smp}


@dataclass(frozen=True)
class Pauses:
    """Silence added after each segment, in seconds: after a sentence, after a paragraph's last
    sentence, after a chapter's last one (the end of every chapter file). Pauses change the
    files, never a segment's audio: changing them renders nothing again."""

    sentence: float = 0.3
    paragraph: float = 0.8
    chapter: float = 2.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not 0 <= value <= 60:
                raise ParameterError(f"Pauses.{f.name} must be within [0, 60] s, not {value}")


@dataclass(frozen=True)
class NarrationSettings:
    """How a document is read.

    Attributes:
        voice: the voice of every chapter not in ``chapter_voices``.
        chapter_voices: (chapter number from 1, voice) pairs.
        code: the code pass's sampling (temperature, top_P, top_K, repetition_penalty,
            max_new_token, prompt such as ``[speed_5]``...); its voice fields and
            ``manual_seed`` are not used (see ``voice`` and ``seed``).
        refine: refine each segment's text first with these parameters (None: read as it is).
        seed: the base seed; each segment's draw is seeded from it and the segment's id.
        model: the model's identity (:func:`chattts.narrate.render.model_identity`): the
            weights and the engine options that change the audio.
        max_chars: the longest segment, in characters (:func:`chattts.text.split_text`).
        normalize: normalise the text (numbers, symbols) as ``Chat.infer`` does.
        max_redraws: draws, with derived seeds, of a segment that gave no audio.
        pauses: silence between segments (not part of any segment's id).
    """

    voice: NarrationVoice
    chapter_voices: tuple[tuple[int, NarrationVoice], ...] = ()
    code: InferCodeParams = field(default_factory=InferCodeParams)
    refine: Optional[RefineTextParams] = None
    seed: int = 0
    model: str = ""
    max_chars: int = DEFAULT_MAX_SPLIT_CHARS
    normalize: bool = True
    max_redraws: int = 4
    pauses: Pauses = field(default_factory=Pauses)

    def __post_init__(self) -> None:
        if not 0 <= self.seed <= 2**63 - 1:
            raise ParameterError(f"seed must be within [0, 2**63 - 1], not {self.seed}")
        if self.max_chars < 1:
            raise ParameterError(f"max_chars must be at least 1, not {self.max_chars}")
        if not 0 <= self.max_redraws <= 100:
            raise ParameterError(f"max_redraws must be within [0, 100], not {self.max_redraws}")
        numbers = [n for n, _ in self.chapter_voices]
        if any(n < 1 for n in numbers) or len(set(numbers)) != len(numbers):
            raise ParameterError("chapter_voices: chapter numbers start at 1, each at most once")

    def voice_of(self, chapter: int) -> NarrationVoice:
        """The voice of chapter ``chapter`` (from 0)."""
        return dict(self.chapter_voices).get(chapter + 1, self.voice)

    def audio_key(self, chapter: int) -> dict[str, Any]:
        """Everything but the text that changes a segment's audio in chapter ``chapter``."""
        return {
            "voice": self.voice_of(chapter).fields(),
            "code": _params_key(self.code),
            "refine": None if self.refine is None else _params_key(self.refine),
            "seed": self.seed,
            "model": self.model,
            "normalize": self.normalize,
            "finish": {"trim": TRIM_THRESHOLD},
        }

    def describe(self) -> dict[str, Any]:
        """The settings as the manifest shows them (JSON values; speaker strings shortened)."""
        return {
            "voice": _voice_label(self.voice),
            "chapter_voices": {str(n): _voice_label(v) for n, v in self.chapter_voices},
            "code": _params_key(self.code),
            "refine": None if self.refine is None else _params_key(self.refine),
            "seed": self.seed,
            "model": self.model,
            "max_chars": self.max_chars,
            "normalize": self.normalize,
            "max_redraws": self.max_redraws,
            "pauses": {f.name: getattr(self.pauses, f.name) for f in fields(Pauses)},
        }


def _params_key(params: RefineTextParams) -> dict[str, Any]:
    return {f.name: getattr(params, f.name) for f in fields(params) if f.name not in _NOT_AUDIO}


def _voice_label(voice: NarrationVoice) -> dict[str, Any]:
    out: dict[str, Any] = {"label": voice.label}
    if voice.spk_emb is not None:
        out["speaker_sha256"] = hashlib.sha256(voice.spk_emb.encode()).hexdigest()[:16]
    if voice.spk_smp is not None:
        out["sample_sha256"] = hashlib.sha256(voice.spk_smp.encode()).hexdigest()[:16]
    return out


@dataclass(frozen=True)
class Segment:
    """One piece of speech: a sentence (or a part of a long one) of a paragraph.

    Attributes:
        id: hex SHA-256 of the text and the audio settings (:func:`segment_id`).
        chapter, paragraph, index: its place (from 0; ``index`` counts within the chapter).
        text: what is read.
        pause: seconds of silence after it in the chapter file.
    """

    id: str
    chapter: int
    paragraph: int
    index: int
    text: str
    pause: float


def segment_id(text: str, key: Mapping[str, Any]) -> str:
    """The id of a segment reading ``text`` with the audio settings ``key``."""
    blob = json.dumps({"text": text, **key}, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def derived_seed(base: int, segment: str, attempt: int = 0) -> int:
    """The seed of draw ``attempt`` (0: the first; 1, 2...: redraws) of segment ``segment``."""
    digest = hashlib.sha256(f"{base}:{segment}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & SEED_MASK


def speakable(text: str) -> bool:
    """True when ``text`` holds a letter or a digit (of any script): a piece of punctuation
    alone, such as a scene break ``* * *``, is a pause, not speech."""
    return any(c.isalnum() for c in text)


def plan(document: Document, settings: NarrationSettings) -> tuple[tuple[Segment, ...], ...]:
    """The segments of every chapter of ``document``, in reading order (pieces without a
    letter or a digit left out: :func:`speakable`).

    Raises:
        ParameterError: a chapter voice for a chapter the document does not have.
    """
    count = len(document.chapters)
    for n, _ in settings.chapter_voices:
        if n > count:
            raise ParameterError(f"a voice for chapter {n}, but the document has {count}")
    p = settings.pauses
    out = []
    for c, chapter in enumerate(document.chapters):
        key = settings.audio_key(c)
        pieces = [
            (k, piece.strip())
            for k, para in enumerate(chapter.paragraphs)
            for piece in split_text(para, settings.max_chars)
            if speakable(piece)
        ]
        segments = []
        for i, (k, text) in enumerate(pieces):
            if i + 1 == len(pieces):
                pause = p.chapter
            else:
                pause = p.paragraph if pieces[i + 1][0] != k else p.sentence
            segments.append(Segment(segment_id(text, key), c, k, i, text, pause))
        out.append(tuple(segments))
    return tuple(out)


def segment_params(
    settings: NarrationSettings, segment: Segment, attempt: int = 0
) -> InferCodeParams:
    """The code pass's parameters of one draw of ``segment``."""
    return replace(
        settings.code,
        **settings.voice_of(segment.chapter).fields(),
        manual_seed=derived_seed(settings.seed, segment.id, attempt),
        show_tqdm=False,
    )


__all__ = [
    "SEED_MASK",
    "TRIM_THRESHOLD",
    "NarrationSettings",
    "NarrationVoice",
    "Pauses",
    "Segment",
    "derived_seed",
    "plan",
    "segment_id",
    "segment_params",
    "speakable",
]
