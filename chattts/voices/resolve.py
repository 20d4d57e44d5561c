"""One voice resolver: a voice spec -> the ``InferCodeParams`` fields that make it speak.

Every front end resolves voices here (:class:`VoiceResolver`): the server, ``Chat``'s voice
names in ``spk_emb``, ``chattts say --voice`` / ``chattts voice mix``. A spec is, in order:

1. a name of the table (the voice library, a voices file, the server's OpenAI names);
2. ``seed_N`` (also ``seedN``, ``seed-N``, ``seed:N``): the voice of seed N;
3. a mix of those, in the one grammar of :mod:`chattts.voices.mix` (``"alice*0.7+seed_2"``),
   bounded by :data:`~chattts.voices.mix.MAX_MIX_TERMS` terms;
4. a speaker string (not ASCII: ``Chat.sample_random_speaker``'s output).

A voice made from a recording (a speaker sample, ``smp`` + ``txt``) gives ``spk_smp`` and
``txt_smp``; it cannot be mixed (a sample is codes, not a speaker vector). The model's
functions are passed in (``draw``: seed -> speaker string; ``encode``: reference audio ->
speaker sample string), so this module needs no model. Seed draws and mixes are cached (each
costs an LZMA re-encode, about 25 ms), and so is reference audio by path or bytes.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from typing import Any, Optional, Protocol, TypeVar, Union

from ..errors import SpeakerError, UnknownVoiceError, VoicesError
from ..validation import MAX_SEED, check_int
from .mix import check_spec_length, is_mix, mix_speakers, parse_mix
from .voice import Voice

#: ``seed_N``: the voice of seed N (N of 1 to 18 digits).
SEED_VOICE = re.compile(r"seed[_:-]?([0-9]{1,18})")
#: Draws the speaker string of a seed (None: a random one).
DrawFn = Callable[[Optional[int]], str]
#: Encodes reference audio (a path, bytes, a waveform) into a speaker sample string.
EncodeFn = Callable[[Any], str]
#: Most resolutions of each kind kept (seed draws, mixes, encoded recordings).
CACHE_SIZE = 1024

T = TypeVar("T")


class VoiceTable(Protocol):
    """Named voices: what :class:`VoiceResolver` looks names up in."""

    def voice_of(self, name: str) -> Optional[Voice]:
        """The voice called ``name``, or None."""

    def known(self) -> str:
        """``"known: a, b"``: the names, for error messages."""


class MappingTable:
    """A :class:`VoiceTable` over a dict name -> :class:`Voice` (or a seed, or a speaker
    string, as a voices file holds them)."""

    def __init__(self, voices: Optional[Mapping[str, Union[Voice, int, str]]] = None) -> None:
        self.voices: dict[str, Voice] = {n: _as_voice(v) for n, v in (voices or {}).items()}

    def voice_of(self, name: str) -> Optional[Voice]:
        return self.voices.get(name)

    def known(self, most: int = 20) -> str:
        names = sorted(self.voices)
        extra = f" and {len(names) - most} more" if len(names) > most else ""
        return f"known: {', '.join(names[:most]) or 'none'}{extra}"


def _as_voice(value: Union[Voice, int, str]) -> Voice:
    if isinstance(value, Voice):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise VoicesError(f"a named voice is a seed or a speaker string, not {value!r}")
    return Voice(seed=value) if isinstance(value, int) else Voice(speaker=value)


class _LRU:
    """A small thread-safe least-recently-used cache."""

    def __init__(self, size: int) -> None:
        self.size, self.items, self.lock = size, OrderedDict(), threading.Lock()

    def get(self, key: Hashable, make: Callable[[], T]) -> T:
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        value = make()  # outside the lock: two threads may make the same value once each
        with self.lock:
            self.items[key] = value
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return value


class VoiceResolver:
    """Voice specs -> :class:`Voice` (speaker string and/or sample) and ``InferCodeParams``
    fields, over a table of named voices (see the module's docstring for the grammar).

    Args:
        table: the named voices: a :class:`VoiceTable` (the voice library), a dict name ->
            :class:`Voice` / seed / speaker string, or None (no names).
        draw: seed -> speaker string (``Chat.sample_random_speaker``); without it a seed voice
            stays a seed and cannot be mixed.
        encode: reference audio -> speaker sample (``Chat.sample_audio_speaker``); without it
            a voice given as audio is refused.
        hidden_size: the model's, checked against every speaker string; ``num_vq``: the
            model's codebooks, checked against every speaker sample.
        seed_names: accept ``seed_N``.
    """

    def __init__(
        self,
        table: Union[None, VoiceTable, Mapping[str, Union[Voice, int, str]]] = None,
        *,
        draw: Optional[DrawFn] = None,
        encode: Optional[EncodeFn] = None,
        hidden_size: Optional[int] = None,
        num_vq: Optional[int] = None,
        seed_names: bool = True,
        cache_size: int = CACHE_SIZE,
    ) -> None:
        self.table: VoiceTable = (
            MappingTable(table) if table is None or isinstance(table, Mapping) else table
        )
        self.draw, self.encode = draw, encode
        self.hidden_size, self.num_vq, self.seed_names = hidden_size, num_vq, seed_names
        self._draws, self._mixes, self._samples = (_LRU(cache_size) for _ in range(3))

    # ---- public -----------------------------------------------------------------------------

    def voice(self, spec: Union[str, int, Voice]) -> Voice:
        """The voice ``spec`` names, completed: a speaker string (seeds drawn when ``draw`` is
        given) and/or a speaker sample with its transcript.

        Raises:
            UnknownVoiceError: a name that is not in the table (nor ``seed_N``).
            VoicesError: a malformed or too long spec, a sample voice in a mix, a seed to mix
                without ``draw``, a speaker or sample of another model size.
        """
        if isinstance(spec, Voice):
            return self._complete(spec, "the voice")
        if isinstance(spec, bool) or not isinstance(spec, (int, str)):
            raise VoicesError(f"a voice is a name, a mix, seed_N or a speaker string, not {spec!r}")
        if isinstance(spec, int):
            return self._complete(Voice(seed=spec), f"seed {spec}")
        return self._spec(spec)

    def fields(self, spec: Union[str, int, Voice]) -> dict[str, Any]:
        """The ``InferCodeParams`` fields of ``spec``: ``spk_emb``, and ``spk_smp`` +
        ``txt_smp`` for a voice made from a recording. A voice with neither (a seed, or
        ``Voice()``: a random voice) is drawn.

        Raises:
            VoicesError: as :meth:`voice`, or a seed voice without ``draw``.
        """
        voice = self.voice(spec)
        out: dict[str, Any] = {}
        if voice.speaker is not None:
            out["spk_emb"] = voice.speaker
        if voice.sample is not None:
            out.update(spk_smp=voice.sample, txt_smp=voice.text)
        if not out:
            out["spk_emb"] = self._drawn(voice.seed, "the voice")
        return out

    def check(self, spec: str) -> None:
        """Check ``spec`` without a model: the grammar, the bounds, and that every name is
        known (what the CLI does before loading the model).

        Raises:
            UnknownVoiceError, VoicesError: as :meth:`voice`.
        """
        check_spec_length(spec)
        name = spec.strip()
        if self._known_name(name):
            return
        if name.isascii() and is_mix(name):
            for term, _ in parse_mix(name):
                if not self._known_name(term):
                    raise self._unknown(term, f" in the mix {name!r}")
            return
        if name and not name.isascii():
            self._speaker(name, "the voice")
            return
        raise self._unknown(name)

    # ---- the grammar ------------------------------------------------------------------------

    def _spec(self, spec: str) -> Voice:
        check_spec_length(spec)
        name = spec.strip()
        if not name:
            raise VoicesError("a voice must not be empty")
        found = self.table.voice_of(name)
        if found is not None:
            return self._complete(found, name)
        seed = self._seed_name(name)
        if seed is not None:
            return self._complete(Voice(seed=seed), name)
        if name.isascii() and is_mix(name):
            return Voice(speaker=self._mix(name))
        if not name.isascii():
            return Voice(speaker=self._speaker(name, "the voice"))
        raise self._unknown(name)

    def _known_name(self, name: str) -> bool:
        return self.table.voice_of(name) is not None or self._seed_name(name) is not None

    def _seed_name(self, name: str) -> Optional[int]:
        m = SEED_VOICE.fullmatch(name) if self.seed_names else None
        return int(m.group(1)) if m else None

    def _unknown(self, name: str, where: str = "") -> UnknownVoiceError:
        seeds = ", or seed_N" if self.seed_names else ""
        return UnknownVoiceError(
            f"unknown voice {name!r}{where} ({self.table.known()}{seeds})", name=name
        )

    def _mix(self, spec: str) -> str:
        parts = parse_mix(spec)  # bounded: MAX_MIX_TERMS, MAX_VOICE_CHARS
        voices = []
        for name, _ in parts:  # every name first: an unknown one fails before any work
            found = self.table.voice_of(name)
            seed = self._seed_name(name) if found is None else None
            if found is None and seed is None:
                raise self._unknown(name, f" in the mix {spec!r}")
            voices.append(found if found is not None else Voice(seed=seed))
        speakers = []
        for (name, weight), voice in zip(parts, voices, strict=True):
            done = self._complete(voice, name)
            if isinstance(done.speaker, str):
                speakers.append((done.speaker, weight))
            elif done.sample is not None:
                raise VoicesError(
                    f"voice {name!r} was made from a recording (a speaker sample, not a speaker "
                    "embedding): it cannot be mixed"
                )
            else:
                raise VoicesError(f"voice {name!r} is a seed: a model is needed to draw it")
        key = hashlib.sha256(repr(speakers).encode()).hexdigest()
        names = [n for n, _ in parts]
        return self._mixes.get(key, lambda: mix_speakers(speakers, names))

    # ---- completing a voice -----------------------------------------------------------------

    def _complete(self, voice: Voice, label: str) -> Voice:
        """``voice`` with its name resolved, its seed drawn (with ``draw``), its audio encoded
        (with ``encode``), and its speaker and sample checked against the model."""
        if voice.name is not None:
            named = self._spec(voice.name)
            return Voice(
                seed=named.seed,
                speaker=named.speaker,
                sample=named.sample,
                text=named.text if named.sample is not None else voice.text,
            )
        speaker, sample = voice.speaker, voice.sample
        if isinstance(speaker, str):
            speaker = self._speaker(speaker, label)
        if voice.audio is not None:
            sample = self._encoded(voice.audio, label)
        elif sample is not None:
            self._sample(sample, label)
        seed = None if voice.seed is None else self._seed(voice.seed)
        if speaker is None and sample is None and seed is not None and self.draw is not None:
            speaker, seed = self._drawn(seed, label), None
        return Voice(seed=seed, speaker=speaker, sample=sample, text=voice.text)

    def _seed(self, seed: Any) -> int:
        try:
            check_int("the seed", seed, 0, MAX_SEED)
        except (TypeError, ValueError) as e:
            raise VoicesError(f"{e} (or give a speaker string)") from e
        return int(seed)

    def _drawn(self, seed: Optional[int], label: str) -> str:
        if self.draw is None:
            raise VoicesError(f"{label} is a seed: a model is needed to draw it")
        draw = self.draw
        if seed is None:
            return draw(None)
        seed = self._seed(seed)
        return self._draws.get(seed, lambda: draw(seed))

    def _speaker(self, speaker: str, label: str) -> str:
        from .speaker import decode_speaker

        try:
            decode_speaker(speaker, self.hidden_size)
        except SpeakerError as e:
            raise VoicesError(f"{label}: {e}") from e
        return speaker

    def _sample(self, sample: str, label: str) -> None:
        from .speaker import decode_sample

        try:
            decode_sample(sample, self.num_vq)
        except SpeakerError as e:
            raise VoicesError(f"{label}: {e}") from e

    def _encoded(self, audio: Any, label: str) -> str:
        if self.encode is None:
            raise VoicesError(f"{label}: reference audio needs the model to encode it")
        encode = self.encode
        key = _audio_key(audio)
        return encode(audio) if key is None else self._samples.get(key, lambda: encode(audio))


def _audio_key(audio: Any) -> Optional[Hashable]:
    """What identifies reference audio for the cache: the bytes' SHA256, or a file's path,
    inode, size and mtime (a changed file is encoded again); None: not cached."""
    if isinstance(audio, (bytes, bytearray)):
        return ("bytes", hashlib.sha256(audio).digest())
    if isinstance(audio, (str, os.PathLike)):
        try:
            st = os.stat(audio)
        except OSError:
            return None
        return ("file", os.path.realpath(audio), st.st_ino, st.st_size, st.st_mtime_ns)
    return None


__all__ = [
    "CACHE_SIZE",
    "SEED_VOICE",
    "DrawFn",
    "EncodeFn",
    "MappingTable",
    "VoiceResolver",
    "VoiceTable",
]
