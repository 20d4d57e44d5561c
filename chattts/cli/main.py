"""The ``chattts`` command: ``say``, ``voice``, ``speaker``, ``download``, ``convert``,
``serve``, ``webui`` (one module per command).

User mistakes (a bad option, a missing model folder, a wrong checksum, an invalid speaker string)
end with one line on stderr and a non-zero exit code, never a traceback. See docs/cli.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import NoReturn, Optional

from ..assets.hub import CUSTOM_HINT
from ..errors import ChatTTSError, ChecksumMismatchError
from . import apps, model, narrate, say
from .voice import add_voice_parser

logger = logging.getLogger("chattts")

PROG = "chattts"
#: What the command line says where the library says ``source='custom'``.
CLI_CUSTOM_HINT = "or give --model-dir DIR, a complete model folder"


class _Parser(argparse.ArgumentParser):
    """argparse, with errors as one line (no usage block) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def version() -> str:
    """The installed chattts's version (its package metadata)."""
    try:
        return metadata.version("chattts")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The ``chattts`` argument parser."""
    parser = _Parser(prog=PROG, description="ChatTTS text-to-speech (docs/cli.md).")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress (INFO)")
    parser.add_argument("--version", action="version", version=f"{PROG} {version()}")
    common = _Parser(add_help=False)
    common.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log progress (INFO)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    say.add_parser(sub, common)
    narrate.add_parser(sub, common)
    model.add_parsers(sub, common)
    add_voice_parser(sub, common)
    apps.add_parsers(sub, common)
    return parser


def _message(e: BaseException) -> str:
    if isinstance(e, ChecksumMismatchError):
        return (
            f"{e.path}: SHA256 mismatch (expected {e.expected}, found {e.found}); the file "
            "is corrupt or not the official checkpoint (--no-verify loads other checkpoints)"
        )
    if isinstance(e, OSError) and e.filename and e.strerror:
        return f"{e.filename}: {e.strerror}"
    text = str(e).strip().replace(CUSTOM_HINT, CLI_CUSTOM_HINT)
    return text.splitlines()[0] if text else type(e).__name__


class _CliHandler(logging.StreamHandler):
    """The command's own log handler (replaced, not added again, when main runs twice)."""


def _setup_logging(verbose: bool) -> None:
    """chattts's log records to stderr: INFO and up with -v, WARNING and up otherwise."""
    for h in [h for h in logger.handlers if isinstance(h, _CliHandler)]:
        logger.removeHandler(h)
    handler = _CliHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if verbose else logging.WARNING)
    logger.propagate = False


def guarded(prog: str, run: Callable[[], Optional[int]]) -> int:
    """Run ``run()`` as a command: a user mistake (a :class:`ChatTTSError`, ``ValueError`` or
    ``OSError``) ends as one line on stderr and status 1, never a traceback (``-v`` logs the
    details); Ctrl-C is status 130. The entry points ``chattts``, ``python -m chattts.server``
    and ``python -m chattts.webui`` all run through it."""
    try:
        return int(run() or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except (ChatTTSError, ValueError, OSError) as e:
        logging.getLogger("chattts").debug("details", exc_info=True)
        print(f"{prog}: error: {_message(e)}", file=sys.stderr)
        return 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    return guarded(PROG, lambda: args.func(args))


__all__ = ["PROG", "build_parser", "guarded", "main"]
