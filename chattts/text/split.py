"""Sentence splitting of ``infer``'s str input (REFERENCE.md §9.1)."""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"(?<=。)|(?<=\. )")


def split_sentences(text: str) -> list[str]:
    """The reference rule: on newlines when there are any, else after ``。`` and ``". "``.

    Empty parts are dropped; the separators stay with the sentence before them.
    """
    parts = text.split("\n") if "\n" in text else _SENTENCE_END.split(text)
    return [p for p in parts if p.strip()]
