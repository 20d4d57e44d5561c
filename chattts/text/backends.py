"""The built-in normalisers: NeMo for English, WeTextProcessing for Chinese.

Both come with the ``text`` extra (``pip install "chattts[text]"``, Linux x86_64). They are
imported and built on first use only, once per process, and shared by every
:class:`~chattts.text.Normalizer`. When a package is missing, one log line names the
``pip install`` that enables it and the language is simply not normalised. Neither library
touches the network.

- English: ``nemo_text_processing.text_normalization.normalize.Normalizer(input_case="cased",
  lang="en")``, ``normalize(text, punct_post_process=True)``. Its grammars take about a
  minute to build, so they are built once into a user cache directory (see
  :func:`default_cache_dir`) and loaded from there (under a second) on later starts.
- Chinese: ``tn.chinese.normalizer.Normalizer()`` with the grammars shipped in the wheel
  (loaded in about a second; a custom build costs one to two minutes). Those grammars delete
  the interjections 啊 and 呃 and the erhua 儿; here such characters are kept: the text is
  cut around them and only the pieces between them are normalised.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Optional, Union

from ..assets.cache import user_cache_dir
from ..errors import BackendUnavailable

logger = logging.getLogger("chattts")

INSTALL_HINT = 'pip install "chattts[text]"'
#: Packages of each built-in normaliser (pip name, import name).
PACKAGES = {
    "en": ("nemo_text_processing", "nemo_text_processing"),
    "zh": ("WeTextProcessing", "tn"),
}
_LANGUAGE_NAMES = {"en": "English", "zh": "Chinese"}
# NeMo's grammars slow down sharply on long inputs: longer texts go in sentence by sentence.
_NEMO_MAX_CHARS = 400
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+")
_PROTECTED_FALLBACK = "呃啊"
_ERHUA = "儿兒"

PathLike = Union[str, "os.PathLike[str]"]


def default_cache_dir() -> Path:
    """Where built grammars are kept: ``<user cache>/chattts/text``
    (:func:`chattts.assets.cache.user_cache_dir`)."""
    return Path(user_cache_dir("text"))


class _DropInfo(logging.Filter):
    """Keeps a chatty library logger to warnings and errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Silence ``name``'s info messages, and undo any root-logger setup done meanwhile."""
    lib = logging.getLogger(name)
    root = logging.getLogger()
    level, handlers = lib.level, list(root.handlers)
    lib.setLevel(logging.WARNING)
    try:
        yield
    finally:
        lib.setLevel(level)
        if not handlers:  # a stray logging.info() configured the root logger: undo it
            for h in list(root.handlers):
                root.removeHandler(h)


def _build_nemo(cache_dir: Optional[Path]) -> Callable[[str], str]:
    nemo_logger = logging.getLogger("NeMo-text-processing")
    if not any(isinstance(f, _DropInfo) for f in nemo_logger.filters):
        nemo_logger.addFilter(_DropInfo())  # it logs every input it cannot post-process
    with _quiet("NeMo-text-processing"):
        from nemo_text_processing.text_normalization.normalize import Normalizer
    version = metadata.version("nemo_text_processing")

    def make(where: Optional[Path]):
        with _quiet("NeMo-text-processing"):
            return Normalizer(input_case="cased", lang="en", cache_dir=where and str(where))

    nemo = None
    if cache_dir is not None:
        nemo = _cached_build(make, cache_dir / f"nemo_text_processing-{version}" / "en_cased")
    if nemo is None:
        logger.info("building the English text-normalisation grammars (about a minute)")
        nemo = make(None)

    def normalize(text: str) -> str:
        if len(text) <= _NEMO_MAX_CHARS:
            return nemo.normalize(text, verbose=False, punct_post_process=True)
        parts = _SENTENCE_END.split(text)
        return " ".join(nemo.normalize(p, verbose=False, punct_post_process=True) for p in parts)

    return normalize


def _cached_build(make: Callable, final: Path):
    """``make(final)`` when ``final`` holds a complete build, else build in a private folder
    and move the files into ``final`` (so a concurrent process never reads half a file).
    None when the cache cannot be written."""
    marker = final / ".complete"
    if marker.exists():
        try:
            return make(final)
        except Exception as e:  # a damaged cache: build again
            logger.warning("text-normalisation cache %s unreadable (%s): rebuilding it", final, e)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=final.parent))
    except OSError as e:
        logger.warning("cannot write the text-normalisation cache %s (%s)", final, e)
        return None
    logger.info(
        "building the English text-normalisation grammars once into %s (about a minute)", final
    )
    try:
        built = make(tmp)
        final.mkdir(exist_ok=True)
        for f in tmp.iterdir():
            os.replace(f, final / f.name)
        marker.touch()
        return built
    except OSError as e:
        logger.warning("cannot write the text-normalisation cache %s (%s)", final, e)
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _wetext_protected() -> str:
    """The characters WeTextProcessing's shipped grammars delete (its interjection list)."""
    try:
        from importlib.resources import files

        table = files("tn").joinpath("chinese/data/default/blacklist.tsv").read_text("utf-8")
        chars = "".join(line.strip() for line in table.splitlines() if len(line.strip()) == 1)
        return chars or _PROTECTED_FALLBACK
    except Exception:
        return _PROTECTED_FALLBACK


def _build_wetext(cache_dir: Optional[Path]) -> Callable[[str], str]:
    wetext_logger = logging.getLogger("wetext")
    if not wetext_logger.handlers:  # keeps tn from installing its own stderr handler
        wetext_logger.addHandler(logging.NullHandler())
    with _quiet("wetext"):
        from tn.chinese.normalizer import Normalizer

        zh = Normalizer()  # the shipped grammars: cache_dir is not needed
    keep = re.compile("([" + re.escape(_wetext_protected() + _ERHUA) + "]+)")

    def normalize(text: str) -> str:
        parts = keep.split(text)
        for i in range(0, len(parts), 2):
            if parts[i].strip():
                parts[i] = zh.normalize(parts[i])
        return "".join(parts)

    return normalize


_BUILDERS = {"en": _build_nemo, "zh": _build_wetext}


class BuiltinNormalizer:
    """A ``str -> str`` normaliser that imports and builds its backend on first call.

    Raises :class:`BackendUnavailable` when its package is missing or fails to load (the
    reason is logged once).
    """

    def __init__(self, lang: str, cache_dir: Optional[Path]) -> None:
        self.lang = lang
        self.cache_dir = cache_dir
        self._fn: Optional[Callable[[str], str]] = None
        self._failed = False
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"BuiltinNormalizer({self.lang!r}, cache_dir={str(self.cache_dir)!r})"

    @property
    def failed(self) -> bool:
        """True once building the backend was tried and failed."""
        return self._failed

    def available(self) -> bool:
        """Build the backend if needed; False when it cannot be had."""
        with self._lock:
            if self._fn is None and not self._failed:
                self._fn = self._build()
                self._failed = self._fn is None
            return self._fn is not None

    def _build(self) -> Optional[Callable[[str], str]]:
        pip_name, module = PACKAGES[self.lang]
        language = _LANGUAGE_NAMES[self.lang]
        if importlib.util.find_spec(module) is None:
            logger.warning(
                "%s text normalisation is off (numbers and symbols are removed): "
                "%s is not installed; %s enables it",
                language,
                pip_name,
                INSTALL_HINT,
            )
            return None
        try:
            return _BUILDERS[self.lang](self.cache_dir)
        except Exception as e:
            logger.warning(
                "%s text normalisation is off: %s failed to load: %r", language, pip_name, e
            )
            return None

    def __call__(self, text: str) -> str:
        if not self.available():
            raise BackendUnavailable(f"no {_LANGUAGE_NAMES[self.lang]} normaliser")
        with self._lock:  # the FST backends are not documented as thread-safe
            return self._fn(text)


_SHARED: dict[tuple[str, Optional[Path]], BuiltinNormalizer] = {}
_SHARED_LOCK = threading.Lock()


def builtin(lang: str, cache_dir: Optional[PathLike] = None) -> BuiltinNormalizer:
    """The process-wide built-in normaliser for ``lang`` (``"en"`` or ``"zh"``).

    ``cache_dir`` (English only) defaults to :func:`default_cache_dir`.
    """
    if lang not in _BUILDERS:
        raise KeyError(lang)
    where = None if lang == "zh" else Path(cache_dir) if cache_dir else default_cache_dir()
    with _SHARED_LOCK:
        key = (lang, where)
        if key not in _SHARED:
            _SHARED[key] = BuiltinNormalizer(lang, where)
        return _SHARED[key]
