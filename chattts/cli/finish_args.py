"""The finishing options of the commands that write speech (docs/captions.md, "Finishing"):
``--tempo``, ``--pitch``, ``--gain``, ``--loudness``, read into one
:class:`chattts.audio.finish.Finish` (its ranges, checked by argparse before the model loads).
"""

from __future__ import annotations

import argparse

from ..audio.finish import RANGES, Finish
from .args import number

#: (option, Finish field, metavar, help) of each finishing option.
_OPTIONS = (
    ("--tempo", "tempo", "X", "exact tempo, pitch kept: 1.25 is 25 %% faster (1)"),
    ("--pitch", "pitch", "SEMITONES", "pitch shift, duration kept (0)"),
    ("--gain", "gain", "DB", "gain in dB, after --loudness (0)"),
    ("--loudness", "loudness", "LUFS", "normalise to this integrated loudness, e.g. -16"),
)


def add_finish_arguments(parser: argparse.ArgumentParser, what: str = "the audio") -> None:
    """Add the "finishing" option group (tempo and pitch need ``pip install
    'chattts[stretch]'``)."""
    g = parser.add_argument_group(
        "finishing", f"applied to {what} (tempo and pitch: pip install 'chattts[stretch]')"
    )
    for flag, name, metavar, text in _OPTIONS:
        low, high = RANGES[name]
        g.add_argument(
            flag,
            dest=f"finish_{name}",
            type=number(float, low, high),
            metavar=metavar,
            help=f"{text}; {low:g} to {high:g}",
        )


def finish_options(args: argparse.Namespace) -> Finish:
    """The :class:`Finish` of parsed finishing options (those not given: no change)."""
    given = {
        name: getattr(args, f"finish_{name}")
        for _, name, _, _ in _OPTIONS
        if getattr(args, f"finish_{name}", None) is not None
    }
    return Finish(**given)


__all__ = ["add_finish_arguments", "finish_options"]
