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
from types import ModuleType
from typing import TYPE_CHECKING, Optional, Union

from ..cli.args import add_load_arguments, add_webui_arguments, app_args, load_options, open_chat
from ..errors import MissingDependencyError
from ..options import LoadOptions
from ..runtime import no_gradio_analytics

if TYPE_CHECKING:
    import gradio
    from fastapi import FastAPI

    from ..chat import Chat

#: Largest file the page accepts as an upload, in bytes (five minutes of 48 kHz stereo 16-bit
#: WAV is 58 MB); how much audio is decoded from it is bounded separately (docs/limits.md).
MAX_UPLOAD_BYTES = 100 << 20

logger = logging.getLogger("chattts.webui")
INSTALL_HINT = "pip install 'chattts[webui]'"


def _gradio() -> ModuleType:
    no_gradio_analytics()
    try:
        import gradio
    except ImportError as e:
        raise MissingDependencyError(f"the web UI needs gradio: {INSTALL_HINT}") from e
    return gradio


def create_ui(
    chat: Optional[Chat] = None,
    voices: Union[None, str, os.PathLike, dict] = None,
    *,
    options: Optional[LoadOptions] = None,
) -> gradio.Blocks:
    """The Gradio Blocks of the interface over a loaded :class:`chattts.Chat` (or, when
    ``chat`` is None, over one opened from ``options``).

    ``voices``: extra voice presets, a dict (name -> seed or speaker string) or a voices file
    or folder (the format of ``chattts say --voices``).

    Raises:
        MissingDependencyError: Gradio is not installed; ValueError: neither chat nor options.
    """
    _gradio()
    from .app import build_ui

    if chat is None and options is None:
        raise ValueError("create_ui: give a loaded chat or options")
    library = None
    if voices is not None and not isinstance(voices, dict):
        from ..voices import VoiceLibrary, load_voices

        library = VoiceLibrary(voices) if os.path.isdir(voices) else None  # saves go there
        voices = load_voices(voices)  # a bad voices file fails before the model loads
    return build_ui(chat if chat is not None else open_chat(options), voices, library)


def launch(
    demo: gradio.Blocks, host: str = "127.0.0.1", port: int = 7860, block: bool = True
) -> tuple[FastAPI, str, Optional[str]]:
    """Serve the interface locally (no share link, no SSR, no analytics, system fonts)."""
    from .app import CSS, theme

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
        css=CSS,
        quiet=not block,  # blocking: Gradio says where it listens
        max_file_size=MAX_UPLOAD_BYTES,
    )


def build_parser() -> argparse.ArgumentParser:
    """Options of ``python -m chattts.webui`` (those of ``chattts webui``)."""
    p = argparse.ArgumentParser(prog="python -m chattts.webui", description="ChatTTS web UI.")
    add_load_arguments(p)
    add_webui_arguments(p)
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: Union[None, Sequence[str], argparse.Namespace] = None) -> int:
    """Run the web UI until interrupted: ``argv`` is a command line, or the Namespace that
    ``chattts webui`` parsed (the same option names)."""
    args = app_args(argv, build_parser, "chattts-webui")
    _gradio()
    demo = create_ui(voices=getattr(args, "voices", None), options=load_options(args))
    launch(demo, args.host, args.port, block=True)
    return 0


__all__ = [
    "MAX_UPLOAD_BYTES",
    "MissingDependencyError",
    "build_parser",
    "create_ui",
    "launch",
    "main",
]
