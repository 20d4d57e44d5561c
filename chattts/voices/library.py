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

Mixes (``"alice*0.7+bob*0.3"``) are :mod:`chattts.voices.mix`'s, resolved by
:class:`chattts.voices.resolve.VoiceResolver`; seed voices are drawn first (the model's
``spk_stat``).

Writes are safe between processes: ``add``, ``rename`` and ``remove`` take the folder's lock
(``.lock``), each file is written whole (a temporary file renamed into place), ``add``
refuses a name that exists even when two processes race, and ``rename`` is one atomic rename
of the file. Reading skips (with a warning naming it) a file that cannot be used, and never
opens what is not a regular file, so one bad file never hides the other voices; ``remove``
deletes a voice's files without reading them, a broken one too.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Optional

from ..assets.cache import user_cache_dir
from ..errors import SpeakerError, UnknownVoiceError, VoicesError
from .files import META_KEYS, read_entries, read_voice_file
from .resolve import VoiceResolver
from .voice import NAME_PATTERN, Voice, looks_like_voice_name

#: Draws the speaker string of a seed (``Chat.sample_random_speaker``).
Draw = Callable[[int], str]
#: The library's write lock, in its folder (``add``, ``rename`` and ``rm`` take it).
LOCK_FILE = ".lock"
#: Seconds a write waits for another process's.
LOCK_TIMEOUT_S = 10.0


def _plain(name: object) -> bool:
    """A name that is a file name of the folder (no separator, not hidden)."""
    return (
        isinstance(name, str)
        and bool(name)
        and not name.startswith(".")
        and not any(c in name for c in "/\\\0")
    )


def _regular(path: str) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


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
        """Every voice, by name (sorted for a folder; a missing folder holds none; a file that
        cannot be read is skipped with a warning that names it)."""
        if not os.path.lexists(self.path):
            return {}
        return {
            name: VoiceRecord(name, voice, **meta)
            for name, (voice, meta) in read_entries(self.path).items()
        }

    def _files(self, name: str) -> list[str]:
        """The files of the voice ``name`` in the folder (``NAME.json``, ``NAME.txt``), of any
        kind (a FIFO too: it is listed, never opened)."""
        if not _plain(name) or not os.path.isdir(self.path):
            return []
        found = (os.path.join(self.path, name + suffix) for suffix in (".json", ".txt"))
        return [f for f in found if os.path.lexists(f)]

    def lookup(self, name: str) -> Optional[VoiceRecord]:
        """The voice called ``name``, or None: in a folder only its own file is read.

        Raises:
            VoicesError: its file cannot be used (bad JSON, not a regular file...), or a bad
                voices file.
        """
        if not os.path.isdir(self.path):
            return self.records().get(name) if os.path.lexists(self.path) else None
        files = self._files(name)
        if not files:
            return None
        try:  # a NAME.txt wins over a NAME.json, as in a listing (sorted, the later one kept)
            voice, meta = read_voice_file(files[-1], name)
        except OSError as e:
            raise VoicesError(f"voice {name!r}: {files[-1]}: {e.strerror or e}") from e
        return VoiceRecord(name, voice, **meta)

    def names(self) -> list[str]:
        """The names of the voices."""
        return list(self.records())

    def get(self, name: str) -> VoiceRecord:
        """The voice called ``name``.

        Raises:
            VoicesError: no such voice (the message lists the known names).
        """
        record = self.lookup(name)
        if record is None:
            raise UnknownVoiceError(f"unknown voice {name!r} in {self.path} ({self.known()})")
        return record

    def known(self, most: int = 20) -> str:
        """``"known: a, b, c"`` (at most ``most`` names), for error messages."""
        names = self.names()
        shown = ", ".join(names[:most]) + (
            f" and {len(names) - most} more" if len(names) > most else ""
        )
        return f"known: {shown or 'none'}"

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
        with self._lock():  # the check and the write as one step: a racing add fails
            self.check_new_name(name, overwrite)
            self._write(record)
        return record

    def rename(self, old: str, new: str) -> VoiceRecord:
        """Give the voice ``old`` the name ``new`` (which must be free): all or nothing.

        Raises:
            VoicesError: ``old`` unknown (or renamed meanwhile), ``new`` taken or not a name.
        """
        self.check_new_name(new, overwrite=False)
        with self._lock():
            record = self.get(old)
            self.check_new_name(new, overwrite=False)
            renamed = replace(record, name=new)
            source = os.path.join(self.path, old + ".json")
            if self._files(old) == [source] and _regular(source):
                os.rename(source, os.path.join(self.path, new + ".json"))  # atomic
            else:  # a NAME.txt voice: written anew as NAME.json
                self._write(renamed)
                self._unlink(old)
        return renamed

    def remove(self, name: str) -> None:
        """Delete the voice ``name``: its files, read or not (a broken file is removed too).

        Raises:
            VoicesError: no such voice, or a voices file (read only).
        """
        self._writable()
        with self._lock():
            if not self._unlink(name):
                raise UnknownVoiceError(f"unknown voice {name!r} in {self.path} ({self.known()})")

    def _unlink(self, name: str) -> bool:
        files = self._files(name)
        for file in files:
            os.remove(file)
        return bool(files)

    def _writable(self) -> None:
        if os.path.isfile(self.path):
            raise VoicesError(f"{self.path} is a voices file (read only): use a voices folder")

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """The library's write lock (``.lock`` in the folder, shared by every process)."""
        from filelock import FileLock, Timeout

        self._writable()
        os.makedirs(self.path, exist_ok=True)
        try:
            with FileLock(os.path.join(self.path, LOCK_FILE), timeout=LOCK_TIMEOUT_S):
                yield
        except Timeout as e:
            raise VoicesError(f"the voice library {self.path} is locked by another process") from e

    def check_new_name(self, name: str, overwrite: bool = False) -> None:
        """``name`` can be written: a valid name, free (or ``overwrite``), a writable library.

        Raises:
            VoicesError: otherwise.
        """
        self._writable()
        if not isinstance(name, str) or NAME_PATTERN.fullmatch(name) is None:
            raise VoicesError(f"bad voice name {name!r}: use up to 64 letters, digits, '_' and '-'")
        if not overwrite and self._files(name):
            raise VoicesError(f"voice {name!r} already exists in {self.path}")

    def _write(self, record: VoiceRecord) -> None:
        """Write ``NAME.json`` whole (a temporary file renamed into place); call under the lock."""
        os.makedirs(self.path, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(record.to_json(), f, ensure_ascii=False, indent=1)
            os.replace(tmp, os.path.join(self.path, f"{record.name}.json"))
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(tmp)
            raise
        stale = os.path.join(self.path, f"{record.name}.txt")
        if os.path.lexists(stale):
            os.remove(stale)

    # -- resolving -----------------------------------------------------------------------

    def voice_of(self, name: str) -> Optional[Voice]:
        """The voice called ``name`` or None (the :class:`~chattts.voices.resolve.VoiceTable`
        that :class:`~chattts.voices.resolve.VoiceResolver` looks names up in)."""
        record = self.lookup(name)
        return None if record is None else record.voice

    def speaker(self, name: str, draw: Optional[Draw] = None) -> str:
        """The speaker string of one voice (a seed voice is drawn with ``draw``).

        Raises:
            VoicesError: unknown, a sample voice (it has no speaker string), or a seed voice
                without ``draw``.
        """
        voice = self.resolver(draw).voice(self.get(name).voice)
        if isinstance(voice.speaker, str):
            return voice.speaker
        if voice.seed is not None:
            raise VoicesError(f"voice {name!r} is a seed: a model is needed to draw it")
        raise VoicesError(
            f"voice {name!r} was made from a recording (a speaker sample, not a speaker "
            "embedding): it cannot be mixed"
        )

    def resolver(
        self, draw: Optional[Draw] = None, hidden_size: Optional[int] = None
    ) -> VoiceResolver:
        """A :class:`~chattts.voices.resolve.VoiceResolver` over this library."""
        return VoiceResolver(self, draw=draw, hidden_size=hidden_size)

    def resolve(
        self, spec: str, draw: Optional[Draw] = None, hidden_size: Optional[int] = None
    ) -> Voice:
        """A voice name, ``seed_N`` or mix -> the :class:`Voice` to speak with
        (:meth:`VoiceResolver.voice <chattts.voices.resolve.VoiceResolver.voice>`).

        A name gives its voice (a seed voice stays a seed unless ``draw`` is given); a mix
        gives ``Voice(speaker=<the mixed speaker string>)``. ``hidden_size``: the model's,
        checked against the speaker's size.

        Raises:
            VoicesError: a malformed mix, an unknown name, a sample voice in a mix, voices of
                different sizes or of another size than ``hidden_size``.
        """
        return self.resolver(draw, hidden_size).voice(spec)


def is_voice_reference(value: object) -> bool:
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
