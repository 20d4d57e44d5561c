"""Placeholder normaliser (pass-through with registration); the text issue completes it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Optional

logger = logging.getLogger("chattts")


class Normalizer:
    """Runs registered per-language normalisers over text."""

    def __init__(self) -> None:
        self.normalizers: dict[str, Callable[[str], str]] = {}

    def register(self, name: str, fn: Callable[[str], str]) -> bool:
        try:
            ok = isinstance(fn("test string 123"), str)
        except Exception:
            ok = False
        if not ok:
            logger.error("normalizer %r failed on a test string: not registered", name)
            return False
        self.normalizers[name] = fn
        return True

    def unregister(self, name: str) -> None:
        self.normalizers.pop(name, None)

    def __call__(
        self,
        text: str,
        do_text_normalization: bool = True,
        do_homophone_replacement: bool = True,
        lang: Optional[str] = None,
    ) -> str:
        return text
