"""The ``--ray`` options of ``chattts serve`` (docs/server.md, "Ray Serve").

Kept apart from :mod:`chattts.server.ray` so that building the command's parser imports
neither Ray nor torch.
"""

from __future__ import annotations

import argparse
import os

#: Where ``--ray-address`` comes from when not given.
RAY_ADDRESS_ENV = "RAY_ADDRESS"


def autoscale_range(text: str) -> tuple[int, int]:
    """``MIN:MAX`` replicas, 0 <= MIN <= MAX, MAX >= 1 (an argparse type)."""
    low, sep, high = text.partition(":")
    try:
        lo, hi = int(low), int(high)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give MIN:MAX replicas, e.g. 1:4") from None
    if not sep or lo < 0 or hi < max(lo, 1):
        raise argparse.ArgumentTypeError(f"{text!r}: need 0 <= MIN <= MAX and MAX >= 1")
    return lo, hi


def _positive(kind: type) -> object:
    def parse(text: str) -> object:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text}: must be more than 0")
        return value

    return parse


def add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the "Ray Serve" option group to the parser of ``chattts serve``."""
    g = parser.add_argument_group("Ray Serve (pip install 'chattts[ray]')")
    g.add_argument("--ray", action="store_true", help="serve as Ray Serve replicas")
    n = g.add_mutually_exclusive_group()
    n.add_argument("--replicas", type=_positive(int), metavar="N", help="fixed replicas (1)")
    n.add_argument("--autoscale", type=autoscale_range, metavar="MIN:MAX", help="autoscale")
    g.add_argument(
        "--ray-address",
        default=os.environ.get(RAY_ADDRESS_ENV),
        metavar="ADDR",
        help=f"join this cluster (${RAY_ADDRESS_ENV}; default: start a local one)",
    )
    g.add_argument(
        "--replica-cpus",
        type=_positive(float),
        default=1.0,
        metavar="N",
        help="CPUs per replica (1)",
    )
    g.add_argument(
        "--max-ongoing-requests",
        type=_positive(int),
        metavar="N",
        help="requests one replica takes at once (default: twice --max-batch)",
    )


__all__ = ["RAY_ADDRESS_ENV", "add_ray_arguments", "autoscale_range"]
