"""``chattts serve`` and ``chattts webui``: the server and the web UI, whose packages are
imported only when asked for (each names the extra that installs it)."""

from __future__ import annotations

import argparse
import importlib

from ..errors import UsageError
from .args import add_load_arguments, add_server_arguments, add_webui_arguments, check_model_dir


def _run_app(module: str, extra: str, args: argparse.Namespace) -> int:
    try:
        mod = importlib.import_module(f"chattts.{module}")
    except ModuleNotFoundError as e:
        if e.name in (f"chattts.{module}", "chattts"):
            raise UsageError(
                f"'chattts {args.command}' is not available: "
                f"chattts.{module} is missing from this installation"
            ) from e
        raise UsageError(
            f"'chattts {args.command}' needs {e.name}: pip install 'chattts[{extra}]'"
        ) from e
    return int(mod.main(args) or 0)


def cmd_serve(args: argparse.Namespace) -> int:
    check_model_dir(args)  # a wrong model folder is one line before the server is imported
    return _run_app("server", "server", args)


def cmd_webui(args: argparse.Namespace) -> int:
    check_model_dir(args)
    return _run_app("webui", "webui", args)


def add_parsers(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("serve", parents=[common], help="OpenAI-compatible speech server")
    add_load_arguments(p)
    add_server_arguments(p)
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("webui", parents=[common], help="browser interface (Gradio)")
    add_load_arguments(p)
    add_webui_arguments(p)
    p.set_defaults(func=cmd_webui)


__all__ = ["add_parsers", "cmd_serve", "cmd_webui"]
