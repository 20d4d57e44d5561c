"""The ``chattts`` command line (docs/cli.md): :func:`main` runs it; each command is a module
(:mod:`.say`, :mod:`.voice`, :mod:`.model`, :mod:`.apps`) over the shared argument helpers of
:mod:`.args`."""

from __future__ import annotations

from ..errors import UsageError
from ..voices import load_voices
from .args import load_chat
from .main import PROG, build_parser, main

__all__ = ["PROG", "UsageError", "build_parser", "load_chat", "load_voices", "main"]
