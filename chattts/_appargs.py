"""Command-line handling shared by the server and the web UI entry points."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Union


def app_args(
    argv: Union[None, Sequence[str], argparse.Namespace],
    build_parser: Callable[[], argparse.ArgumentParser],
    name: str,
) -> argparse.Namespace:
    """The options of an app: the Namespace ``chattts serve|webui`` parsed, or ``argv`` parsed
    here (then logging goes to stderr, at INFO with ``-v``, unless the caller set it up)."""
    if isinstance(argv, argparse.Namespace):
        return argv
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO if args.verbose else logging.WARNING,
            format=f"{name}: %(levelname)s: %(message)s",
            stream=sys.stderr,
        )
    return args
