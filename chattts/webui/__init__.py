"""The ChatTTS web interface (Gradio): ``chattts webui`` or ``python -m chattts.webui``.

>>> from chattts.webui import create_ui
>>> demo = create_ui(chat)                     # doctest: +SKIP
>>> launch(demo, host="127.0.0.1", port=7860)  # doctest: +SKIP

Needs ``pip install 'chattts[webui]'``. Gradio's analytics are switched off and the page
uses system fonts, so nothing leaves the machine. See docs/webui.md.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from typing import Any, Optional, Union

from .._appargs import app_args
from ..errors import ChatTTSError

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

logger = logging.getLogger("chattts.webui")
INSTALL_HINT = "pip install 'chattts[webui]'"


class MissingDependencyError(ChatTTSError, ImportError):
    """Gradio is not installed."""


def _gradio() -> Any:
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    try:
        import gradio
    except ImportError as e:
        raise MissingDependencyError(f"the web UI needs gradio: {INSTALL_HINT}") from e
    return gradio


def create_ui(chat: Any, voices: Union[None, str, os.PathLike, dict] = None) -> Any:
    """The Gradio Blocks of the interface over a loaded :class:`chattts.Chat`.

    ``voices``: extra voice presets, a dict (name -> seed or speaker string) or a voices file
    or folder (the format of ``chattts say --voices``).
    """
    _gradio()
    from .app import build_ui

    if voices is not None and not isinstance(voices, dict):
        from ..cli import load_voices

        voices = load_voices(voices)
    return build_ui(chat, voices)


def launch(demo: Any, host: str = "127.0.0.1", port: int = 7860, block: bool = True) -> Any:
    """Serve the interface locally (no share link, no SSR, no analytics, system fonts)."""
    from .app import theme

    demo.queue(default_concurrency_limit=1)
    return demo.launch(
        server_name=host,
        server_port=port,
        share=False,
        inbrowser=False,
        show_error=True,
        prevent_thread_lock=not block,
        ssr_mode=False,
        pwa=False,
        mcp_server=False,
        theme=theme(),
        quiet=not block,  # blocking: Gradio says where it listens
    )


def build_parser() -> argparse.ArgumentParser:
    """Options of ``python -m chattts.webui`` (those of ``chattts webui``)."""
    p = argparse.ArgumentParser(prog="python -m chattts.webui", description="ChatTTS web UI.")
    p.add_argument("--model-dir", metavar="DIR", help="model folder")
    p.add_argument("--source", choices=("huggingface", "local", "custom"))
    p.add_argument("--no-verify", dest="verify", action="store_false", help="skip SHA256 checks")
    p.add_argument("--device", help="torch device (default: auto)")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32")
    p.add_argument("--quantize", choices=("int8",))
    p.add_argument("--voices", metavar="PATH", default=os.environ.get("CHATTTS_VOICES"))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: Union[None, Sequence[str], argparse.Namespace] = None) -> int:
    """Run the web UI until interrupted: ``argv`` is a command line, or the Namespace that
    ``chattts webui`` parsed (the same option names)."""
    args = app_args(argv, build_parser, "chattts-webui")
    _gradio()
    from ..chat import Chat

    chat = Chat()
    model_dir: Optional[str] = getattr(args, "model_dir", None)
    chat.load(
        source=getattr(args, "source", None) or ("custom" if model_dir else "huggingface"),
        custom_path=model_dir,
        verify=getattr(args, "verify", True),
        device=getattr(args, "device", None),
        dtype=getattr(args, "dtype", "float32"),
        quantize=getattr(args, "quantize", None),
        raise_on_error=True,
    )
    demo = create_ui(chat, getattr(args, "voices", None))
    launch(demo, args.host, args.port, block=True)
    return 0


__all__ = ["MissingDependencyError", "build_parser", "create_ui", "launch", "main"]
