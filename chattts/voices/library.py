"""The voice library: named voices in a folder, and weighted mixes of them (docs/compat.md).

A library voice is one ``NAME.json`` file in the voices folder (by default the user cache,
``$XDG_CACHE_HOME/chattts/voices`` or ``~/.cache/chattts/voices``)::

    {"spk": "蘁淰敥欀...", "from_seed": 42, "lang": "en", "gender": "female", "notes": "warm"}

``spk`` is the speaker string; a voice made from a recording holds instead ``smp``, the speaker
sample string of ``Chat.sample_audio_speaker`` (DVAE codes of the recording, not a speaker
embedding), and ``txt``, its transcript: it is used as ``spk_smp`` + ``txt_smp`` and cannot be
mixed. ``from_seed``, ``lang``, ``gender`` and ``notes`` are information only. The folder is a
voices folder as ``--voices`` reads it (:func:`chattts.voices.read_voices`), so ``NAME.txt``
files and old ``{"seed": N}`` files are voices too.

Mixes (``"alice*0.7+bob*0.3"``) are :mod:`chattts.voices.mix`'s; seed voices are drawn first
(the model's ``spk_stat``).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Optional

from ..assets.cache import user_cache_dir
from ..errors import SpeakerError, VoicesError
from .files import META_KEYS, read_voices
from .mix import is_mix, mix_speakers, parse_mix
from .voice import NAME_PATTERN, Voice, looks_like_voice_name

#: Draws the speaker string of a seed (``Chat.sample_random_speaker``).
Draw = Callable[[int], str]


def default_voices_dir() -> str:
    """The user's voices folder: ``<user cache>/chattts/voices``
    (:func:`chattts.assets.cache.user_cache_dir`)."""
    return user_cache_dir("voices")


@dataclass(frozen=True)
class VoiceRecord:
    """A named voice of the library: the :class:`Voice` and what is known about it."""

    name: str
    voice: Voice
    from_seed: Optional[int] = None
    lang: Optional[str] = None
    gender: Optional[str] = None
    notes: Optional[str] = None

    @property
    def kind(self) -> str:
        """``"speaker"`` (a speaker string), ``"sample"`` (a recording) or ``"seed"``."""
        if isinstance(self.voice.speaker, str):
            return "speaker"
        return "sample" if self.voice.sample is not None else "seed"

    def to_json(self) -> dict[str, Any]:
        """The object of its ``NAME.json`` file."""
        v = self.voice
        out: dict[str, Any] = {}
        if v.speaker is not None:
            out["spk"] = v.speaker
        if v.sample is not None:
            out["smp"], out["txt"] = v.sample, v.text
        if not out and v.seed is not None:
            out["seed"] = v.seed
        for key in META_KEYS:
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    def describe(self) -> dict[str, Any]:
        """What a listing shows: name, kind and metadata (no long strings)."""
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        seed = self.voice.seed if self.voice.seed is not None else self.from_seed
        if seed is not None:
            out["seed"] = seed
        for key in ("lang", "gender", "notes"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.voice.text:
            out["text"] = self.voice.text
        return out


@dataclass
class VoiceLibrary:
    """Named voices in a folder (or read-only, in a voices JSON file), and their mixes.

    Args:
        path: the voices folder (default :func:`default_voices_dir`; created on the first
            :meth:`add`) or a voices JSON file (read only).
    """

    path: str = field(default_factory=default_voices_dir)

    def __post_init__(self) -> None:
        self.path = os.fspath(self.path)

    # -- reading -------------------------------------------------------------------------

    def records(self) -> dict[str, VoiceRecord]:
        """Every voice, by name (sorted for a folder; a missing folder holds none)."""
        if not os.path.exists(self.path):
            return {}
        out = {}
        for name, voice in read_voices(self.path).items():
            meta = self._meta(name) if os.path.isdir(self.path) else {}
            out[name] = VoiceRecord(name, voice, **meta)
        return out

    def _meta(self, name: str) -> dict[str, Any]:
        file = os.path.join(self.path, f"{name}.json")
        if not os.path.isfile(file):
            return {}
        with open(file, encoding="utf-8") as f:
            raw = json.load(f)
        return {k: raw[k] for k in META_KEYS if isinstance(raw, dict) and raw.get(k) is not None}

    def names(self) -> list[str]:
        """The names of the voices."""
        return list(self.records())

    def get(self, name: str) -> VoiceRecord:
        """The voice called ``name``.

        Raises:
            VoicesError: no such voice (the message lists the known names).
        """
        records = self.records()
        if name not in records:
            known = ", ".join(records) or "none"
            raise VoicesError(f"unknown voice {name!r} in {self.path} (known: {known})")
        return records[name]

    # -- writing -------------------------------------------------------------------------

    def add(
        self,
        name: str,
        *,
        speaker: Optional[str] = None,
        seed: Optional[int] = None,
        sample: Optional[str] = None,
        text: Optional[str] = None,
        lang: Optional[str] = None,
        gender: Optional[str] = None,
        notes: Optional[str] = None,
        draw: Optional[Draw] = None,
        overwrite: bool = False,
    ) -> VoiceRecord:
        """Save a voice: a speaker string, a seed (its speaker string is drawn with ``draw``
        and stored, the seed kept as ``from_seed``; without ``draw`` the seed alone), or a
        speaker sample (``sample_audio_speaker``) with its transcript ``text``.

        Raises:
            VoicesError: a bad name, an existing name without ``overwrite``, a read-only
                library, nothing or a bad speaker given.
        """
        self.check_new_name(name, overwrite)
        if speaker is None and sample is None:
            if seed is None:
                raise VoicesError(f"voice {name!r}: give a speaker string, a seed or a sample")
            if draw is not None:
                speaker = draw(int(seed))
        if speaker is not None:
            from .speaker import decode_speaker

            try:
                decode_speaker(speaker)
            except SpeakerError as e:
                raise VoicesError(f"voice {name!r}: {e}") from e
        if sample is not None and text is None:
            raise VoicesError(f"voice {name!r}: a sample needs its transcript (text)")
        chosen = speaker is not None or sample is not None
        voice = Voice(seed=None if chosen else seed, speaker=speaker, sample=sample, text=text)
        record = VoiceRecord(name, voice, seed if chosen else None, lang, gender, notes)
        self._write(record)
        return record

    def rename(self, old: str, new: str) -> VoiceRecord:
        """Give the voice ``old`` the name ``new`` (which must be free)."""
        record = self.get(old)
        self.check_new_name(new, overwrite=False)
        renamed = replace(record, name=new)
        self._write(renamed)
        self.remove(old)
        return renamed

    def remove(self, name: str) -> None:
        """Delete the voice ``name`` (raises :class:`VoicesError` when it does not exist)."""
        self.get(name)
        self._writable()
        for suffix in (".json", ".txt"):
            file = os.path.join(self.path, name + suffix)
            if os.path.isfile(file):
                os.remove(file)

    def _writable(self) -> None:
        if os.path.isfile(self.path):
            raise VoicesError(f"{self.path} is a voices file (read only): use a voices folder")

    def check_new_name(self, name: str, overwrite: bool = False) -> None:
        """``name`` can be written: a valid name, free (or ``overwrite``), a writable library.

        Raises:
            VoicesError: otherwise.
        """
        self._writable()
        if not isinstance(name, str) or NAME_PATTERN.fullmatch(name) is None:
            raise VoicesError(f"bad voice name {name!r}: use up to 64 letters, digits, '_' and '-'")
        if not overwrite and name in self.records():
            raise VoicesError(f"voice {name!r} already exists in {self.path}")

    def _write(self, record: VoiceRecord) -> None:
        os.makedirs(self.path, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(record.to_json(), f, ensure_ascii=False, indent=1)
        os.replace(tmp, os.path.join(self.path, f"{record.name}.json"))
        stale = os.path.join(self.path, f"{record.name}.txt")
        if os.path.isfile(stale):
            os.remove(stale)

    # -- resolving -----------------------------------------------------------------------

    def speaker(self, name: str, draw: Optional[Draw] = None) -> str:
        """The speaker string of one voice (a seed voice is drawn with ``draw``).

        Raises:
            VoicesError: unknown, a sample voice (it has no speaker string), or a seed voice
                without ``draw``.
        """
        record = self.get(name)
        voice = record.voice
        if isinstance(voice.speaker, str):
            return voice.speaker
        if voice.seed is not None and draw is not None:
            return draw(voice.seed)
        if voice.seed is not None:
            raise VoicesError(f"voice {name!r} is a seed: a model is needed to draw it")
        raise VoicesError(
            f"voice {name!r} was made from a recording (a speaker sample, not a speaker "
            "embedding): it cannot be mixed"
        )

    def resolve(
        self, spec: str, draw: Optional[Draw] = None, hidden_size: Optional[int] = None
    ) -> Voice:
        """A voice name or mix -> the :class:`Voice` to speak with.

        A name gives its voice (a seed voice stays a seed unless ``draw`` is given); a mix
        gives ``Voice(speaker=<the mixed speaker string>)``. ``hidden_size``: the model's,
        checked against the speaker's size.

        Raises:
            VoicesError: a malformed mix, an unknown name, a sample voice in a mix, voices of
                different sizes or of another size than ``hidden_size``.
        """
        spec = spec.strip()
        records = self.records()
        if spec in records or not is_mix(spec):  # a voices file's name may hold any character
            if spec not in records and not looks_like_voice_name(spec):
                raise VoicesError(f"bad voice name {spec!r}")
            voice = self.get(spec).voice
            if voice.speaker is None and voice.sample is None and draw is not None:
                voice = Voice(speaker=draw(voice.seed))
        else:
            parts = parse_mix(spec)
            names = [n for n, _ in parts]
            speakers = [(self.speaker(n, draw), w) for n, w in parts]
            voice = Voice(speaker=mix_speakers(speakers, names))
        if hidden_size is not None and isinstance(voice.speaker, str):
            from .speaker import decode_speaker

            try:
                decode_speaker(voice.speaker, hidden_size)
            except SpeakerError as e:
                raise VoicesError(f"voice {spec!r}: {e}") from e
        return voice


def is_voice_reference(value: Any) -> bool:
    """True for a string that names a library voice or mix rather than a speaker string
    (speaker strings are never ASCII)."""
    return isinstance(value, str) and looks_like_voice_name(value)


__all__ = [
    "Draw",
    "VoiceLibrary",
    "VoiceRecord",
    "default_voices_dir",
    "is_voice_reference",
]
