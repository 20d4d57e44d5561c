"""Dia-style API on ``Chat`` (placeholder; the Dia-style issue fills it in)."""

from __future__ import annotations


class DiaAPI:
    """Mixin of ``Chat``: ``from_pretrained``, ``generate``, ``generate_batch``, ``save_audio``."""
