"""Text normalisation before the models (docs/architecture.md, "Text normalisation").

The model reads Chinese characters, Latin letters, ``，。、,.``, spaces and ``[...]`` tags.
:class:`Normalizer` turns what a user writes into that: numbers, dates, currencies, units and
symbols are spoken by a per-language normaliser (NeMo for English, WeTextProcessing for
Chinese, used automatically when the ``text`` extra is installed), punctuation is mapped to
the pauses the model knows, homophones are replaced from an optional table, and whatever is
still unreadable is removed and named in one warning per call.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Optional

from ..errors import AssetNotFoundError, BackendUnavailable, TextError
from . import chars
from .backends import INSTALL_HINT, BuiltinNormalizer, PathLike, builtin
from .split import split_text

logger = logging.getLogger("chattts")

#: What :meth:`Normalizer.register` feeds a new normaliser to check it.
TEST_STRING = "test string 测试字符串 123"
# In English text, a stretch of Chinese with the digits, symbols and punctuation attached to
# it (no space or Latin letter in between) goes to the Chinese normaliser.
_NON_LATIN_RUN = re.compile(r"[^\sA-Za-z]+")
_EDGES = re.compile(r"^(\s*)(.*?)(\s*)$", re.S)
#: Longest piece handed to a language normaliser at once, in characters. Longer text is cut
#: first (at sentence ends, then clause boundaries, then spaces, else hard): NeMo's time grows
#: faster than linearly with its input (400 characters take about 0.25 s, a 4,096-digit number
#: 38 s and 1 GB) and a 200,000-character piece aborted the process inside its native code.
MAX_NORMALIZER_CHARS = 400


class Normalizer:
    """Makes text readable by the model; ``normalizer(text) -> str``.

    Args:
        homophones: optional JSON table ``{"char": "replacement"}`` (see
            :meth:`load_homophones`).
        cache_dir: where the English grammars are built once (default: the user cache,
            ``$XDG_CACHE_HOME/chattts/text`` or ``~/.cache/chattts/text`` on Linux).
        builtin_normalizers: use NeMo (``en``) and WeTextProcessing (``zh``) when installed.
            They are imported and built on first use only, so construction is cheap.

    ``normalizers`` maps a language code to its normaliser; :meth:`register` adds or
    replaces one (a built-in one is replaced, one registered by hand is kept).
    """

    def __init__(
        self,
        homophones: Optional[PathLike] = None,
        *,
        cache_dir: Optional[PathLike] = None,
        builtin_normalizers: bool = True,
    ) -> None:
        self.normalizers: dict[str, Callable[[str], str]] = {}
        self._by_hand: set[str] = set()  # registered by hand since the last renew()
        if builtin_normalizers:
            for lang in ("en", "zh"):
                self.normalizers[lang] = builtin(lang, cache_dir)
        self.homophones: dict[str, str] = {}
        self._homophone_table = str.maketrans({})
        self._said_no_homophones = False
        if homophones is not None:
            self.load_homophones(homophones)

    # -- registration ------------------------------------------------------------------

    def register(self, name: str, normalizer: Callable[[str], str]) -> bool:
        """Use ``normalizer`` (str -> str) for the language ``name`` (``"en"``, ``"zh"``...).

        The reference's signature (``register(name, normalizer)``). ``normalizer`` is called
        once on a test string; one that raises or returns something other than a str is
        refused. A name already registered by hand since the last :meth:`renew` is refused too
        (unregister it first); a built-in normaliser, or one registered before the last
        :meth:`renew` (which ``Chat.load`` calls, as the reference rebuilds its normaliser on
        load), is replaced. Returns whether ``normalizer`` was registered.
        """
        current = self.normalizers.get(name)
        if name in self._by_hand and current is not None:
            logger.warning("a normalizer is already registered as %r: unregister it first", name)
            return False
        try:
            value = normalizer(TEST_STRING)
        except Exception as e:
            logger.warning("normalizer %r failed on a test string (%r): not registered", name, e)
            return False
        if not isinstance(value, str):
            logger.warning(
                "normalizer %r returned %s, not str: not registered", name, type(value).__name__
            )
            return False
        self.normalizers[name] = normalizer
        self._by_hand.add(name)
        return True

    def renew(self) -> None:
        """Let the next :meth:`register` of each name replace what is registered now.

        ``Chat.load`` calls it: a script that registers its normalisers after every load (as
        the reference's web UI does on reload) succeeds again, and normalisers registered
        before keep working until replaced.
        """
        self._by_hand.clear()

    def unregister(self, name: str) -> None:
        """Stop normalising ``name`` text (built-in normaliser included); no-op if absent."""
        self.normalizers.pop(name, None)
        self._by_hand.discard(name)

    def prepare(self, langs: Iterable[str] = ("en", "zh")) -> dict[str, bool]:
        """Build the built-in normalisers now rather than on first use (a server's start-up).

        Returns, per language, whether a normaliser is available.
        """
        ready = {}
        for lang in langs:
            fn = self.normalizers.get(lang)
            ready[lang] = fn.available() if isinstance(fn, BuiltinNormalizer) else fn is not None
        return ready

    # -- homophones --------------------------------------------------------------------

    def load_homophones(self, path: PathLike) -> int:
        """Replace the homophone table by the JSON file ``path``: ``{"char": "replacement"}``,
        one character to one character. Returns the number of entries.

        Raises:
            AssetNotFoundError: ``path`` does not exist.
            TextError: the file is not such a table.
        """
        p = Path(path)
        try:
            table = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise AssetNotFoundError(f"homophone table {p} does not exist") from e
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise TextError(f"homophone table {p} is not readable JSON: {e}") from e
        if not isinstance(table, dict):
            raise TextError(f"homophone table {p}: expected an object {{char: replacement}}")
        bad = [
            (k, v)
            for k, v in table.items()
            if not (isinstance(v, str) and len(k) == 1 and len(v) == 1)
        ]
        if bad:
            raise TextError(
                f"homophone table {p}: entries must map one character to one character; "
                f"{len(bad)} do not, e.g. {bad[0][0]!r}: {bad[0][1]!r}"
            )
        self.homophones = dict(table)
        self._homophone_table = str.maketrans(self.homophones)
        logger.debug("loaded %d homophones from %s", len(table), p)
        return len(table)

    def _replace_homophones(self, text: str) -> str:
        if not self.homophones:
            if not self._said_no_homophones:
                logger.debug("no homophone table loaded: homophone replacement does nothing")
                self._said_no_homophones = True
            return text
        counts: Counter[str] = Counter()

        def replace(piece: str) -> str:
            counts.update(c for c in piece if c in self.homophones)
            return piece.translate(self._homophone_table)

        text = chars.map_outside_tags(text, replace)
        if counts:
            logger.info(
                "replaced homophones: %s",
                ", ".join(f"{c}->{self.homophones[c]}" for c in counts),
            )
        return text

    # -- normalisation -----------------------------------------------------------------

    def __call__(
        self,
        text: str,
        do_text_normalization: bool = True,
        do_homophone_replacement: bool = True,
        lang: Optional[str] = None,
    ) -> str:
        """``text`` as the model can read it.

        Steps: whitespace becomes spaces; with ``do_text_normalization``, letters and digits
        are folded to ASCII (``café`` -> ``cafe``), the language is detected (``zh`` when CJK
        characters outnumber English words; ``lang`` overrides), the language's normaliser
        runs between the ``[...]`` tags (in English text, stretches of Chinese go to the
        Chinese normaliser) and ``zh`` text gets full-width punctuation; then the
        invalid-character map, homophone replacement, and removal of what is still
        unreadable (outside tags), named in one warning (none when nothing speakable is left:
        the request path then refuses the text with an ``EmptyInputError``).
        """
        removed: list[str] = []
        failed: list[tuple[str, str, Exception]] = []
        text = chars.spaces(text)
        if do_text_normalization:
            text = chars.map_outside_tags(text, lambda s: chars.fold(s, removed))
            lang = lang or chars.detect_language(text)
            text = chars.map_outside_tags(text, lambda s: self._normalize_piece(s, lang, failed))
            if failed:
                name, piece, err = failed[0]
                logger.warning(
                    "normalizer %r failed on %d piece(s) of the text (first: %r, %r): "
                    "those pieces keep the built-in character rules only",
                    name,
                    len(failed),
                    piece[:60],
                    err,
                )
            if lang == "zh":
                text = chars.map_outside_tags(text, chars.to_fullwidth)
        text = chars.map_outside_tags(text, chars.map_invalid)
        if do_homophone_replacement:
            text = self._replace_homophones(text)
        text = chars.map_outside_tags(text, lambda s: chars.remove_invalid(s, removed))
        if removed and chars.has_speech(text):  # else the caller's EmptyInputError says it
            self._warn_removed(removed, lang if do_text_normalization else None)
        return text

    def _normalize_piece(self, piece: str, lang: str, failed: list) -> str:
        """One stretch of text between tags through the normaliser(s) of ``lang``."""
        if lang != "en" or not chars.CJK.search(piece):
            return self._run_long(lang, piece, failed)
        out, at = [], 0
        for m in _NON_LATIN_RUN.finditer(piece):
            if not chars.CJK.search(m.group()):
                continue
            out.append(self._run_long("en", piece[at : m.start()], failed))
            out.append(chars.to_fullwidth(self._run_long("zh", m.group(), failed)))
            at = m.end()
        out.append(self._run_long("en", piece[at:], failed))
        return "".join(out)

    def _run_long(self, lang: str, piece: str, failed: list) -> str:
        """:meth:`_run` on pieces of at most :data:`MAX_NORMALIZER_CHARS` characters."""
        if len(piece) <= MAX_NORMALIZER_CHARS:
            return self._run(lang, piece, failed)
        parts = split_text(piece, MAX_NORMALIZER_CHARS)
        if "".join(parts) != piece:  # whitespace-only parts were dropped: cut by length
            step = MAX_NORMALIZER_CHARS
            parts = [piece[i : i + step] for i in range(0, len(piece), step)]
        return "".join(self._run(lang, p, failed) for p in parts)

    def _run(self, lang: str, piece: str, failed: list) -> str:
        """``piece`` through the normaliser registered for ``lang``, its edge spaces kept.

        Without a normaliser, or when it fails (noted in ``failed``), ``piece`` comes back
        unchanged.
        """
        fn = self.normalizers.get(lang)
        lead, core, trail = _EDGES.match(piece).groups()
        if fn is None or not core:
            return piece
        try:
            out = fn(core)
        except BackendUnavailable:
            return piece
        except Exception as e:
            failed.append((lang, core, e))
            return piece
        if not isinstance(out, str):
            failed.append((lang, core, TypeError(f"returned {type(out).__name__}, not str")))
            return piece
        return lead + out + trail

    def _warn_removed(self, removed: list[str], lang: Optional[str]) -> None:
        """One warning naming the removed characters that carried content; punctuation the
        model reads as nothing is dropped quietly (:func:`chars.is_content`)."""
        quiet = [c for c in removed if not chars.is_content(c)]
        if quiet:
            logger.debug("dropped punctuation the model does not read: %s", "".join(quiet))
        removed = [c for c in removed if chars.is_content(c)]
        if not removed:
            return
        hint = ""
        if lang is None:
            hint = " (text normalisation is off)"
        elif any(c.isdigit() for c in removed):
            fn = self.normalizers.get(lang)
            if fn is None or (isinstance(fn, BuiltinNormalizer) and fn.failed):
                hint = f" (no {lang!r} normaliser reads the numbers: {INSTALL_HINT})"
        logger.warning(
            "removed %d character(s) the model cannot read: %s%s",
            len(removed),
            chars.describe(removed),
            hint,
        )
