"""OpenAI-compatible speech server: ``POST /v1/audio/speech`` on FastAPI + uvicorn.

>>> from chattts.server import create_app
>>> app = create_app(model_dir="path/to/model", voices="voices.json")  # doctest: +SKIP
>>> # uvicorn.run(app, host="127.0.0.1", port=8000)

Start it from the shell with ``chattts serve --model-dir DIR`` (or ``python -m
chattts.server``). Needs ``pip install 'chattts[server]'``. See docs/server.md.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Optional, Union

from ..cli.args import (
    add_load_arguments,
    add_server_arguments,
    app_args,
    check_origins,
    load_options,
    open_chat,
    server_options,
)
from ..errors import MissingDependencyError
from ..options import EngineOptions, LoadOptions
from .batcher import Batcher, BatchStats, SpeechJob
from .protocol import ConnectionLimits, limited_h11
from .schemas import (
    MAX_INPUT_CHARS,
    MODEL_NAMES,
    RESPONSE_FORMATS,
    RequestError,
    SpeechRequest,
    parse_request,
    speed_to_prompt,
)
from .voices import OPENAI_VOICES, Voices

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..chat import Chat

logger = logging.getLogger("chattts.server")

INSTALL_HINT = "pip install 'chattts[server]'"


def _require_web() -> None:
    missing = []
    for name in ("fastapi", "uvicorn"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise MissingDependencyError(
            f"the speech server needs {' and '.join(missing)}: {INSTALL_HINT}"
        )


def create_app(
    chat: Optional[Chat] = None,
    *,
    options: Optional[LoadOptions] = None,
    model_dir: Optional[str] = None,
    source: str = "custom",
    verify: bool = True,
    device: Optional[str] = None,
    dtype: str = "float32",
    quantize: Optional[str] = None,
    voices: Union[None, str, os.PathLike, dict] = None,
    api_key: Optional[str] = None,
    max_batch: int = 8,
    batch_wait_ms: float = 20.0,
    max_queue: int = 256,
    max_new_token: int = 2048,
    allowed_hosts: Optional[list[str]] = None,
    cors_origins: Sequence[str] = (),
) -> FastAPI:
    """The FastAPI app of the server.

    Args:
        chat: a loaded :class:`chattts.Chat` (used by the server's worker thread only); when
            None, one is opened from ``options``, or else from ``model_dir`` / ``source``
            (``verify``, ``device``, ``dtype``, ``quantize`` as in :meth:`chattts.Chat.load`).
        options: how to open the model when ``chat`` is None (the keywords above are then
            ignored).
        voices: named voices: a JSON file or folder (format: docs/server.md) or a dict
            name -> seed, speaker string or :class:`chattts.voices.Voice`; None: the voices
            of ``chat.voices``, the voice library (``chattts voice add``). OpenAI's voice
            names are always there.
        api_key: require ``Authorization: Bearer <api_key>`` on ``/v1/*`` and on the OpenAPI
            document (``/openapi.json``, ``/docs``), which lists the voice names.
        max_batch: most requests synthesised together; ``batch_wait_ms``: how long the first
            request waits for others to join; ``max_queue``: more waiting requests get 429.
        max_new_token: the most code steps a request may ask for (and its default).
        allowed_hosts: Host header names accepted besides localhost when there is no API key
            (docs/server.md, Host check).
        cors_origins: web origins (``http://localhost:3000``, or ``*``) whose pages may call
            the server (CORS, docs/server.md, "Browsers"); none: CORS is off.

    Raises:
        MissingDependencyError: FastAPI or uvicorn is not installed.
        ChatTTSError, OSError, ValueError: the model or the voices cannot be loaded.
        UsageError: a malformed CORS origin.
    """
    _require_web()
    origins = check_origins(cors_origins)  # before the model loads
    from .app import SpeechService, build_app

    if chat is None:
        if options is None:
            if source == "custom" and not model_dir:
                raise ValueError("create_app: give a loaded chat, options or model_dir")
            engine = EngineOptions(dtype=dtype, quantize=quantize)
            options = LoadOptions(source, model_dir, verify=verify, device=device, engine=engine)
        chat = open_chat(options)
    elif not chat.has_loaded():
        raise ValueError("create_app: the chat's models are not loaded (call chat.load())")
    gpt = chat.config.gpt
    table = Voices.load(
        voices,
        int(gpt.hidden_size),
        chat.sample_random_speaker,
        library=chat.voices,
        num_vq=int(gpt.num_vq),
    )
    batcher = Batcher(chat, max_batch=max_batch, batch_wait_ms=batch_wait_ms, max_queue=max_queue)
    service = SpeechService(chat, table, batcher, api_key, max_new_token, allowed_hosts)
    return build_app(service, origins)


def build_parser() -> argparse.ArgumentParser:
    """Options of ``python -m chattts.server`` (the same as ``chattts serve``)."""
    p = argparse.ArgumentParser(
        prog="python -m chattts.server", description="OpenAI-compatible ChatTTS speech server."
    )
    add_load_arguments(p)
    add_server_arguments(p)
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: Union[None, Sequence[str], argparse.Namespace] = None) -> int:
    """Run the server until interrupted: ``argv`` is a command line, or the Namespace that
    ``chattts serve`` parsed (the same option names)."""
    args = app_args(argv, build_parser, "chattts-server")
    _require_web()
    if getattr(args, "ray", False):  # replicas on Ray Serve (docs/server.md, "Ray Serve")
        from .ray import main as ray_main

        return ray_main(args)
    settings = server_options(args)
    import uvicorn

    app = create_app(
        options=load_options(args),
        allowed_hosts=[settings.host],  # besides localhost: the Host check of docs/server.md
        **settings.app_kwargs(),
    )
    logging.getLogger("chattts.server").setLevel(logging.INFO)
    logger.info("serving on http://%s:%d", settings.host, settings.port)
    limits = ConnectionLimits(
        header_timeout_s=settings.header_timeout,
        body_timeout_s=settings.body_timeout,
        max_connections=settings.max_connections,
    )
    uvicorn.run(app, host=settings.host, port=settings.port, **uvicorn_settings(limits))
    return 0


def uvicorn_settings(limits: Optional[ConnectionLimits] = None) -> dict:
    """uvicorn options of ``chattts serve`` (docs/limits.md): the h11 parser, whose bound on an
    incomplete request head (twice the app's 431 limit) stops headers of any size from being
    read into memory before the app sees them (httptools has no such bound), with the
    deadlines and the connection cap of ``limits`` (:func:`.protocol.limited_h11`; default
    :class:`ConnectionLimits`)."""
    from .app import MAX_HEADER_BYTES

    limits = limits or ConnectionLimits()
    return {
        "http": limited_h11(limits),
        "h11_max_incomplete_event_size": 2 * MAX_HEADER_BYTES,
        "timeout_keep_alive": limits.keep_alive_s,
        "log_level": "info",
        "access_log": False,
    }


__all__ = [
    "MAX_INPUT_CHARS",
    "MODEL_NAMES",
    "OPENAI_VOICES",
    "RESPONSE_FORMATS",
    "BatchStats",
    "Batcher",
    "ConnectionLimits",
    "MissingDependencyError",
    "RequestError",
    "SpeechJob",
    "SpeechRequest",
    "Voices",
    "create_app",
    "main",
    "parse_request",
    "speed_to_prompt",
    "uvicorn_settings",
]
