"""One generation of the page, free of Gradio: the controls' values (:class:`Settings`) in,
updates of the page's outputs out (:func:`generate`).

Speech goes through :meth:`chattts.chat.speech.SpeechCalls.speak` (or ``speak_stream`` while
the page streams) over the page's voices (:mod:`.voices`), with the browser session's own
cancel flag: an interrupt keeps the speech made so far. The result is written as files named
after the words spoken (``hello-there.mp3``, ``.srt``, ``.vtt``) in a folder of the session.

Each update is a dict from output names (:data:`OUTPUTS`) to values; ``warnings`` lists what
the library warned about (SSML constructs not applied, characters the model cannot read), for
the page to show.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from ..audio.speech import Mark, Segment, Speech
from ..chat.speech import SpeechCalls
from ..errors import ChatTTSWarning, ParameterError
from ..generation.engine import Interrupt
from .text import EXAMPLE, caption_rows, check_length, file_stem
from .voices import CUSTOM, DEFAULT_VOICE, PageVoices, custom_voice

if TYPE_CHECKING:
    from ..chat import Chat

#: Audio formats offered, by the name the page shows: (format, file suffix).
FORMATS: dict[str, tuple[str, str]] = {
    "mp3": ("mp3", ".mp3"),
    "wav": ("wav", ".wav"),
    "opus": ("opus", ".opus"),
    "flac": ("flac", ".flac"),
    "m4a (AAC)": ("m4a", ".m4a"),
}
#: Languages offered: (label, value); "auto" lets the normaliser detect it.
LANGUAGES = [("Detect", "auto"), ("English", "en"), ("Chinese", "zh")]
#: The page's outputs that :func:`generate` updates.
OUTPUTS = ("status", "live", "audio", "captions", "files")

#: Receives (step, max_steps, seconds of audio so far or None) while the code pass runs.
StepSink = Callable[[int, int, Optional[float]], None]


def _optional_int(name: str, value: object) -> Optional[int]:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise ParameterError(f"{name} must be a whole number, not {value!r}")
    return int(value)


@dataclass(frozen=True)
class Settings:
    """The page's controls for one generation (the defaults are the page's).

    Attributes:
        text: plain text, or an SSML document with ``ssml``.
        voice: a voice spec (``seed_2``, a library name, a mix) or :data:`~.voices.CUSTOM`.
        speaker, sample, sample_text: the Voice section (used by :data:`~.voices.CUSTOM`).
        tempo: speed factor of the finished audio (pitch kept); ``speed``: ChatTTS's
            ``[speed_N]`` prompt, 0–9.
        lang: ``"auto"``, ``"en"`` or ``"zh"``; ``format``: a key of :data:`FORMATS`.
        refine, refine_prompt: the refine pass and its prompt (``[oral_2][laugh_0][break_6]``).
        temperature, top_p, top_k, seed, max_steps: sampling (a None seed: random each time;
            None steps: the model's default).
        stream: play and caption the audio while it is made.
        loudness_on, loudness: normalise to ``loudness`` LUFS; ``pitch``: semitones;
            ``gain``: dB.
    """

    text: str = EXAMPLE
    ssml: bool = False
    voice: str = DEFAULT_VOICE
    speaker: str = ""
    sample: str = ""
    sample_text: str = ""
    tempo: float = 1.0
    speed: int = 5
    lang: str = "auto"
    format: str = "mp3"
    refine: bool = True
    refine_prompt: str = ""
    temperature: float = 0.3
    top_p: float = 0.7
    top_k: int = 20
    seed: Optional[float] = 42
    max_steps: Optional[float] = 2048
    stream: bool = True
    loudness_on: bool = False
    loudness: float = -16.0
    pitch: float = 0.0
    gain: float = 0.0

    def options(self) -> dict[str, object]:
        """The keywords of :meth:`~chattts.chat.speech.SpeechCalls.speak` (voice aside).

        Raises:
            ParameterError: an unknown format or language, a seed or step count that is not a
            whole number (the library checks every range).
        """
        if self.format not in FORMATS:
            raise ParameterError(f"unknown format {self.format!r}: use one of {list(FORMATS)}")
        if self.lang not in {v for _, v in LANGUAGES}:
            raise ParameterError(f"unknown language {self.lang!r}: use auto, en or zh")
        return {
            "ssml": bool(self.ssml),
            "seed": _optional_int("the seed", self.seed),
            "temperature": float(self.temperature),
            "top_p": float(self.top_p),
            "top_k": _optional_int("top_K", self.top_k),
            "max_new_token": _optional_int("max code steps", self.max_steps),
            "speed": _optional_int("the ChatTTS speed", self.speed),
            "refine": bool(self.refine),
            "refine_prompt": (self.refine_prompt or "").strip() or None,
            "lang": None if self.lang == "auto" else self.lang,
            "tempo": float(self.tempo),
            "pitch": float(self.pitch),
            "gain": float(self.gain),
            "loudness": float(self.loudness) if self.loudness_on else None,
        }


class _Steps:
    """The ``progress`` callback of ``speak``: passes (step, max_steps) on to ``sink`` at most
    every ``every`` seconds (and at the last step), with the seconds of audio so far."""

    def __init__(self, sink: Optional[StepSink], every: float = 0.2) -> None:
        self.sink, self.every = sink, every
        self.step, self.max_steps, self.seconds = 0, 0, None
        self._last = 0.0

    def __call__(self, step: int, max_steps: int) -> None:
        self.step, self.max_steps = step, max_steps
        now = time.monotonic()
        if self.sink is not None and (now - self._last >= self.every or step >= max_steps):
            self._last = now
            self.sink(step, max_steps, self.seconds)


class _Heard(logging.Handler):
    """Keeps the library's warnings (not the page's own log) while a generation runs."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith("chattts.webui"):
            self.messages.append(record.getMessage())


#: Held while a :class:`Warned` records Python's warnings (its filters are process-wide).
_RECORDING = threading.Lock()


class Warned:
    """Collects the library's warnings (its :class:`~chattts.errors.ChatTTSWarning` s and its
    log's warnings) while open; other warnings are shown as usual once it closes.

    Python's warning filters are process-wide: one Warned at a time records them (the page's
    queue runs one generation at a time); another one open meanwhile (two generations called
    from Python at once) collects only the log's warnings.
    """

    def __enter__(self) -> Warned:
        self._caught: list[warnings.WarningMessage] = []
        self._catcher: Optional[warnings.catch_warnings] = None
        if _RECORDING.acquire(blocking=False):
            self._catcher = warnings.catch_warnings(record=True)
            self._caught = self._catcher.__enter__()
            warnings.simplefilter("always", ChatTTSWarning)
        self._heard = _Heard()
        logging.getLogger("chattts").addHandler(self._heard)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger("chattts").removeHandler(self._heard)
        if self._catcher is None:
            return
        self._catcher.__exit__(*exc)
        _RECORDING.release()
        for w in self._caught:
            if not issubclass(w.category, ChatTTSWarning):
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)

    @property
    def messages(self) -> list[str]:
        """Each of the library's warnings once, in order."""
        ours = [str(w.message) for w in self._caught if issubclass(w.category, ChatTTSWarning)]
        return list(dict.fromkeys(ours + self._heard.messages))


def speech_calls(chat: Chat, voices: PageVoices, settings: Settings) -> tuple[SpeechCalls, str]:
    """``speak`` over the page's voices, and the voice spec to give it.

    Raises:
        VoicesError: an empty Custom voice, or a sample without its transcript.
    """
    if settings.voice == CUSTOM:
        custom = custom_voice(settings.speaker, settings.sample, settings.sample_text)
        resolver = voices.resolver(custom)
    else:
        resolver = voices.resolver()
    calls = SpeechCalls(lambda: chat.pipeline, lambda: resolver, chat.context)
    return calls, (settings.voice or "").strip()


class _Collected:
    """The chunks of a streamed speech so far."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.audio: list[np.ndarray] = []
        self.segments: list[Segment] = []
        self.marks: list[Mark] = []
        self.samples = 0

    def speech(self) -> Speech:
        wav = np.concatenate(self.audio) if self.audio else np.zeros(0, dtype=np.float32)
        return Speech(wav, self.rate, tuple(self.segments), tuple(self.marks))


def _streamed(
    calls: SpeechCalls, text: str, options: dict[str, Any], steps: _Steps, got: _Collected
) -> Iterator[tuple[np.ndarray, bool]]:
    """``speak_stream`` into ``got``: yields (new samples, whether captions were added)."""
    steps.seconds = 0.0
    for chunk in calls.speak_stream(text, progress=steps, **options):
        got.audio.append(chunk.audio)
        got.segments += chunk.segments
        got.marks += chunk.marks
        got.samples += chunk.audio.size
        steps.seconds = got.samples / got.rate
        if chunk.audio.size or chunk.segments:
            yield chunk.audio, bool(chunk.segments)


def write_files(speech: Speech, folder: str, format: str) -> tuple[str, list[str]]:
    """The audio (in ``format``, a key of :data:`FORMATS`) and its .srt and .vtt captions,
    named after the words spoken, written atomically into ``folder``; returns (audio path,
    every path)."""
    fmt, suffix = FORMATS[format]
    stem = file_stem(s.text for s in speech.segments)
    os.makedirs(folder, exist_ok=True)
    paths = [os.path.join(folder, stem + s) for s in (suffix, ".srt", ".vtt")]
    writers = (
        lambda f: speech.save(f, fmt),
        lambda f: speech.save_captions(f, "srt"),
        lambda f: speech.save_captions(f, "vtt"),
    )
    for path, write in zip(paths, writers, strict=True):
        part = path + ".part"
        try:
            with open(part, "wb") as f:
                write(f)
            os.replace(part, path)
        finally:
            if os.path.exists(part):
                os.remove(part)
    return paths[0], paths


def _status_done(speech: Speech, seconds: float, interrupted: bool, name: str) -> str:
    n = len(speech.segments)
    if speech.duration == 0:
        if interrupted:
            return "**Stopped** before any audio was made."
        return "**Done**, but the model made no audio: try another seed or voice."
    if interrupted:
        return (
            f"**Stopped after {speech.duration:.1f} s**: the audio made so far is kept "
            f"({n} caption{'s' * (n != 1)}), ready to play and download as `{name}`."
        )
    return (
        f"**Done**: {speech.duration:.1f} s of audio in {seconds:.1f} s, {n} "
        f"caption{'s' * (n != 1)} · `{name}`"
    )


def generate(
    chat: Chat,
    voices: PageVoices,
    settings: Settings,
    *,
    cancel: Interrupt,
    folder: str,
    on_step: Optional[StepSink] = None,
) -> Iterator[dict[str, Any]]:
    """Speak ``settings`` and yield updates of the page's outputs (:data:`OUTPUTS`), the last
    one with the finished audio file, its captions and downloads, and ``warnings``.

    Raises:
        ChatTTSError: the user's mistake (no text, a bad SSML document, a voice or value out of
        range), before any audio is made.
    """
    started = time.monotonic()
    check_length(settings.text)
    options = settings.options()
    calls, voice = speech_calls(chat, voices, settings)
    options.update(voice=voice, cancel=cancel)
    rate = int(chat.config.sample_rate)
    steps = _Steps(on_step)
    yield {"status": "**Generating…**", "live": None, "audio": None, "captions": [], "files": None}
    with Warned() as warned:
        if settings.stream:
            got = _Collected(rate)
            for samples, captioned in _streamed(calls, settings.text, options, steps, got):
                update: dict[str, Any] = {"status": _running(steps)}
                if samples.size:
                    update["live"] = (rate, _int16(samples))
                if captioned:
                    update["captions"] = caption_rows(got.segments)
                yield update
            speech = got.speech()
        else:
            speech = calls.speak(settings.text, progress=steps, **options)
    elapsed = time.monotonic() - started
    interrupted = cancel.is_set()
    out: dict[str, Any] = {"captions": caption_rows(speech.segments), "warnings": warned.messages}
    if speech.duration == 0:
        out.update(status=_status_done(speech, elapsed, interrupted, ""), audio=None, files=None)
        yield out
        return
    audio, files = write_files(speech, folder, settings.format)
    name = os.path.basename(audio)
    out.update(status=_status_done(speech, elapsed, interrupted, name), audio=audio, files=files)
    out["speech"] = speech
    yield out


def _running(steps: _Steps) -> str:
    seconds = steps.seconds or 0.0
    where = f"code step {steps.step} of at most {steps.max_steps}" if steps.max_steps else ""
    return f"**Generating…** {seconds:.1f} s of audio so far" + (f" · {where}" if where else "")


def _int16(wav: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(wav * 32767.0), -32768, 32767).astype(np.int16)


__all__ = [
    "FORMATS",
    "LANGUAGES",
    "OUTPUTS",
    "Settings",
    "StepSink",
    "Warned",
    "generate",
    "speech_calls",
    "write_files",
]
