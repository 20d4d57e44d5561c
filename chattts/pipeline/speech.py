"""Speech requests: text or SSML, in one voice, finished and captioned, to a typed result.

Every front end that wants finished speech (``Chat.speak``, the CLI's ``say``, the server, the
web UI, narration) builds one :class:`SpeechRequest` and gets a
:class:`~chattts.audio.speech.Speech` back (or its stream, :mod:`.assembler`):

1. :func:`plan_speech`: the request becomes a plan — an SSML document through
   :func:`chattts.ssml.parse`, plain text as one ``Speak`` item; each item is split into
   sentences (the reference's rule, and after ``! ? ;``), normalised, cut under
   ``max_split_chars`` and, with ``captions``, cut at clauses into pieces that fit one caption
   cue, so that every caption's time is measured, never interpolated. Each piece is a
   :class:`SegmentPlan`: the text the model reads, what its caption shows (the normalised
   words, no control tokens), its code and refine parameters (segment i seeded with
   ``seed + i``) and its own finishing (SSML prosody). ``<break>`` becomes a
   :class:`~chattts.audio.speech.Pause` of digital silence, ``<mark>`` a
   :class:`~chattts.audio.speech.Bookmark`.
2. The segments are synthesised as independent utterances (:meth:`Pipeline.synthesize`), in
   batches, each seeded on its own: a segment sounds the same whatever it is batched with.
3. :func:`chattts.audio.speech.assemble` joins them, finishes each piece and the whole, and
   records every segment's exact time in the final audio.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Optional, Union

import numpy as np

from ..audio.dsp import require_stretch
from ..audio.finish import Finish
from ..audio.speech import Bookmark, Pause, Piece, Speech, assemble
from ..captions import caption_pieces
from ..errors import EmptyInputError, InputTypeError, ParameterError
from ..generation.engine import Interrupt
from ..params import InferCodeParams, RefineTextParams, Sampling
from ..ssml import Break, Mark, Plan, Speak, parse
from ..text import DEFAULT_MAX_SPLIT_CHARS, split_sentences
from ..text import split_text as split_long
from ..text.chars import CONTROL_TOKEN, has_speech
from .core import Pipeline
from .requests import TRIM_THRESHOLD, Progress, Utterance, trim_silence

#: Resolves a voice spec (a name, a mix, ``seed_N``, a speaker string, or None for the
#: request's default voice) to ``InferCodeParams`` fields (``spk_emb``, or ``spk_smp`` +
#: ``txt_smp``).
VoiceFields = Callable[[Optional[str]], dict[str, object]]

#: Segments synthesised together at most (each holds its own KV cache rows).
DEFAULT_BATCH = 8
#: Widest caption piece, in columns (two lines of 42).
CAPTION_COLUMNS = 84


@dataclass(frozen=True)
class SpeechRequest:
    """What to say and how: the one request type of the speech path.

    Attributes:
        text: plain text, or an SSML document with ``ssml``.
        voice: a voice spec (a library name, a mix ``"a*0.7+b*0.3"``, ``seed_N`` or a speaker
            string); None: the voice of ``sampling.seed``, else a random one.
        ssml: ``text`` is an SSML document (docs/ssml.md).
        sampling: sampling options, seed and ``[speed_N]``.
        refine: run the refine pass on each segment first (prosody tokens).
        lang: the normaliser's language (``"en"``, ``"zh"``), else detected.
        normalize: normalise the text (numbers, symbols).
        finish: finishing of the whole result (tempo, pitch, gain, loudness).
        captions: cut sentences too long for one caption cue into clauses before synthesis.
        gap: seconds of silence between two segments.
        max_split_chars: longest piece the model reads at once.
    """

    text: str
    voice: Optional[str] = None
    ssml: bool = False
    sampling: Sampling = field(default_factory=Sampling)
    refine: bool = False
    lang: Optional[str] = None
    normalize: bool = True
    finish: Finish = field(default_factory=Finish)
    captions: bool = True
    gap: float = 0.0
    max_split_chars: int = DEFAULT_MAX_SPLIT_CHARS

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise InputTypeError(f"text must be a str, not {type(self.text).__name__}")
        if self.voice is not None and not isinstance(self.voice, str):
            raise InputTypeError(f"voice must be a str, not {type(self.voice).__name__}")
        if not isinstance(self.finish, Finish):
            raise InputTypeError(f"finish must be a Finish, not {type(self.finish).__name__}")
        if isinstance(self.gap, bool) or not isinstance(self.gap, (int, float)):
            raise InputTypeError(f"gap must be a number of seconds, not {self.gap!r}")
        if not (math.isfinite(self.gap) and 0 <= self.gap <= 10):
            raise ParameterError(f"gap must be between 0 and 10 seconds, not {self.gap!r}")

    @classmethod
    def of(cls, text: str, **options: object) -> SpeechRequest:
        """A request from flat keywords, the one way front ends build it: those of
        :class:`~chattts.params.Sampling` (``seed``, ``top_p``, ``speed``...) and of
        :class:`~chattts.audio.finish.Finish` (``tempo``, ``pitch``, ``gain``,
        ``loudness``...) go to them, the others to the request (``voice``, ``ssml``...).

        Raises:
            TypeError: an unknown keyword; ParameterError: a value out of its range.
        """
        sampling = {k: options.pop(k) for k in list(options) if k in _SAMPLING_KEYS}
        finish = {k: options.pop(k) for k in list(options) if k in _FINISH_KEYS}
        return cls(text, sampling=Sampling(**sampling), finish=Finish(**finish), **options)


_SAMPLING_KEYS = frozenset(f.name for f in fields(Sampling))
_FINISH_KEYS = frozenset(f.name for f in fields(Finish))


@dataclass(frozen=True)
class SegmentPlan:
    """One piece the model speaks.

    Attributes:
        text: what the model reads (normalised; control tokens kept).
        caption: what its caption shows: the spoken words, without control tokens.
        voice: the voice spec it was given (None: the request's default), for the result.
        params: the code pass's parameters (voice and seed applied).
        refine: the refine pass's parameters, or None.
        finish: its own finishing (SSML prosody: tempo, pitch, gain).
        silent: the segment takes its time but is not heard (SSML ``volume="silent"``).
    """

    text: str
    caption: str
    voice: Optional[str]
    params: InferCodeParams
    refine: Optional[RefineTextParams] = None
    finish: Finish = field(default_factory=Finish)
    silent: bool = False

    def utterance(self, cancel: Optional[Interrupt] = None) -> Utterance:
        return Utterance(self.text, self.params, self.refine, cancel)


#: An item of a planned speech, in order.
PlanItem = Union[SegmentPlan, Pause, Bookmark]


def _document(request: SpeechRequest) -> Plan:
    if request.ssml:
        return parse(request.text)
    speak = Speak(request.text, request.text, lang=request.lang, normalize=request.normalize)
    return Plan((speak,), request.lang)


#: Where the speech path ends a sentence besides the reference's rule (``。`` and ``". "``):
#: after ``! ? ;`` (and ``. ``) followed by a space, and after ``！？；``.
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+(?=\S)|(?<=[。！？；])")


def sentences(text: str) -> list[str]:
    """The sentences of ``text``: the reference's rule, then every ``! ? ;`` end (a segment
    and a caption each)."""
    return [p.strip() for s in split_sentences(text) for p in _SENTENCE_END.split(s) if p.strip()]


def _pieces(pipeline: Pipeline, item: Speak, request: SpeechRequest) -> list[str]:
    """The pieces of one Speak item: sentences, normalised, cut under the length limit and,
    with captions, into caption-sized clauses."""
    lang = item.lang or request.lang
    out: list[str] = []
    for sentence in sentences(item.text):
        text = pipeline.normalizer(sentence, item.normalize and request.normalize, True, lang)
        for piece in split_long(text, request.max_split_chars):
            if request.captions and len(spoken_words(piece)) > CAPTION_COLUMNS // 2:
                out += caption_pieces(piece, CAPTION_COLUMNS)
            else:
                out.append(piece)
    return [p for p in out if has_speech(p)]


def spoken_words(text: str) -> str:
    """The words of a normalised piece, as its caption shows them: control tokens dropped,
    spaces collapsed."""
    return " ".join(CONTROL_TOKEN.sub(" ", text).split())


def _finish(item: Speak) -> tuple[Finish, bool]:
    p = item.prosody
    silent = p.volume == -math.inf
    return Finish(tempo=p.rate, pitch=p.pitch, gain=0.0 if silent else p.volume), silent


def plan_speech(
    pipeline: Pipeline, request: SpeechRequest, voice_fields: VoiceFields
) -> list[PlanItem]:
    """The request as the segments the model speaks, pauses and bookmarks, in order.

    Raises:
        SsmlError: a bad SSML document; EmptyInputError: nothing to speak; VoicesError: an
        unknown voice; MissingDependencyError: a tempo or pitch change without pedalboard.
    """
    doc = _document(request)
    items: list[PlanItem] = []
    voices: dict[Optional[str], dict[str, object]] = {}
    seed, n = request.sampling.seed, 0
    for item in doc.items:
        if isinstance(item, Break):
            items.append(Pause(item.seconds))
        elif isinstance(item, Mark):
            items.append(Bookmark(item.name))
        else:
            spec = item.voice if item.voice is not None else request.voice
            if spec not in voices:
                voices[spec] = voice_fields(spec)
            finish, silent = _finish(item)
            for text in _pieces(pipeline, item, request):
                own = None if seed is None else seed + n
                n += 1
                params = request.sampling.code_params(own, item.speed, **voices[spec])
                refine = None
                if request.refine or item.refine_prompt is not None:
                    refine = request.sampling.refine_params(own, item.refine_prompt)
                caption = spoken_words(text)
                items.append(SegmentPlan(text, caption, spec, params, refine, finish, silent))
    if not any(isinstance(x, SegmentPlan) and has_speech(x.text) for x in items):
        raise EmptyInputError(request.text)
    if request.finish.stretches or any(x.finish.stretches for x in segments_of(items)):
        require_stretch()  # before any synthesis, not after it
    return items


def segments_of(items: Sequence[PlanItem]) -> list[SegmentPlan]:
    return [x for x in items if isinstance(x, SegmentPlan)]


def synthesize_segments(
    pipeline: Pipeline,
    segments: Sequence[SegmentPlan],
    *,
    batch: int = DEFAULT_BATCH,
    cancel: Optional[Interrupt] = None,
    progress: Optional[Progress] = None,
) -> Iterator[tuple[int, np.ndarray, bool]]:
    """Stream the segments' audio: ``(segment index, new samples, finished)``, batch after
    batch (segments of a batch come interleaved; each one's chunks in order)."""
    for start in range(0, len(segments), batch):
        part = list(segments[start : start + batch])
        utterances = [s.utterance(cancel) for s in part]  # a cancel also stops refining
        stream = pipeline.synthesize(
            utterances, stream=True, normalize=False, progress=progress, cancel=cancel
        )
        for chunks in stream:
            for j, chunk in enumerate(chunks):
                if chunk.size:
                    yield start + j, chunk, False
        for j in range(len(part)):
            yield start + j, np.zeros(0, dtype=np.float32), True


def _piece(item: SegmentPlan, wav: np.ndarray, rate: int) -> Union[Piece, Pause]:
    """A segment's audio as a piece to assemble; a silent segment as the pause it lasts."""
    if not item.silent:
        return Piece(wav, item.caption, item.voice, item.finish)
    heard = trim_silence(wav)
    return Pause(item.finish.length(heard.size) / rate)


def render_speech(
    pipeline: Pipeline,
    items: Sequence[PlanItem],
    request: SpeechRequest,
    *,
    batch: int = DEFAULT_BATCH,
    cancel: Optional[Interrupt] = None,
    progress: Optional[Progress] = None,
) -> Speech:
    """Synthesise a plan whole: the :class:`Speech` with its segments' exact times."""
    segments = segments_of(items)
    audio: list[list[np.ndarray]] = [[] for _ in segments]
    for index, chunk, _ in synthesize_segments(
        pipeline, segments, batch=batch, cancel=cancel, progress=progress
    ):
        audio[index].append(chunk)
    pieces: list[Union[Piece, Pause, Bookmark]] = []
    index = 0
    for item in items:
        if isinstance(item, SegmentPlan):
            wav = np.concatenate(audio[index]) if audio[index] else np.zeros(0, np.float32)
            pieces.append(_piece(item, wav, pipeline.sample_rate))
            index += 1
        else:
            pieces.append(item)
    return assemble(
        pieces, pipeline.sample_rate, gap=request.gap, finish=request.finish, trim=TRIM_THRESHOLD
    )


__all__ = [
    "CAPTION_COLUMNS",
    "DEFAULT_BATCH",
    "PlanItem",
    "SegmentPlan",
    "SpeechRequest",
    "VoiceFields",
    "plan_speech",
    "render_speech",
    "segments_of",
    "spoken_words",
    "synthesize_segments",
]
