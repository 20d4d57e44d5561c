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
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Optional, Union

from ..cli.args import (
    SERVER_DEFAULTS,
    ServerOptions,
    add_load_arguments,
    add_server_arguments,
    app_args,
    load_options,
    open_chat,
    server_options,
)
from ..errors import MissingDependencyError
from ..options import LoadOptions
from ..validation import MAX_NEW_TOKEN
from .batcher import SpeechJob, Worker
from .protocol import ConnectionLimits, limited_h11
from .schemas import (
    MAX_INPUT_CHARS,
    MODEL_NAMES,
    RESPONSE_FORMATS,
    RequestError,
    SpeechBody,
    parse_request,
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
    settings: ServerOptions = SERVER_DEFAULTS,
    allowed_hosts: Sequence[str] = (),
    replica: Optional[str] = None,
    **overrides: Any,  # Any: ServerOptions' fields, each with its own type
) -> FastAPI:
    """The FastAPI app of the server, complete: nothing is set on it afterwards.

    Args:
        chat: a loaded :class:`chattts.Chat` (the server's worker thread is its only user);
            when None, one is opened from ``options``, or else from ``model_dir`` (a model
            folder, not verified against the official hashes).
        settings: the server's options (:class:`chattts.cli.args.ServerOptions`, the same
            as ``chattts serve``'s: voices, api_key, max_batch, max_queue, max_new_token,
            cors_origins, scheduling...); ``overrides`` replace some of them
            (``create_app(chat, api_key="k")``).
        allowed_hosts: Host header names accepted besides localhost when there is no API key
            (docs/server.md, Host check).
        replica: the name the metrics and the replica header carry (Ray Serve's replicas,
            and the jobs they run).

    Raises:
        MissingDependencyError: FastAPI or uvicorn is not installed.
        ChatTTSError, OSError, ValueError: the model or the voices cannot be loaded.
        UsageError: a bad option (a malformed CORS origin, a batch size below 1...).
    """
    _require_web()
    settings = replace(settings, **overrides) if overrides else settings
    from .app import build_app
    from .jobs import JobManager, data_dir
    from .service import SpeechService

    if chat is None:
        if options is None:
            if not model_dir:
                raise ValueError("create_app: give a loaded chat, options or model_dir")
            options = LoadOptions("custom", model_dir, verify=False)
        chat = open_chat(options)
    elif not chat.has_loaded():
        raise ValueError("create_app: the chat's models are not loaded (call chat.load())")
    gpt = chat.config.gpt
    table = Voices.load(
        settings.voices,
        int(gpt.hidden_size),
        chat.sample_random_speaker,
        library=chat.voices,
        num_vq=int(gpt.num_vq),
    )
    worker = Worker(
        chat.pipeline,
        max_batch=settings.max_batch,
        max_queue=settings.max_queue,
        max_new_token=min(settings.max_new_token, MAX_NEW_TOKEN),
        continuous=settings.scheduling == "continuous",
        batch_wait_ms=settings.batch_wait_ms,
    )
    service = SpeechService(
        chat, table, worker, settings.max_new_token, settings.api_key, allowed_hosts
    )
    jobs = JobManager(
        service,
        data_dir(settings.data_dir),
        max_jobs=settings.max_jobs,
        max_bytes=settings.max_job_bytes,
        ttl=settings.job_ttl * 3600.0,
        workers=settings.job_workers,
        replica=replica or "",
    )
    return build_app(service, settings.cors_origins, replica, jobs)


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
        settings=settings,
        allowed_hosts=[settings.host],  # besides localhost: the Host check of docs/server.md
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
    "ConnectionLimits",
    "MissingDependencyError",
    "RequestError",
    "ServerOptions",
    "SpeechBody",
    "SpeechJob",
    "Voices",
    "Worker",
    "create_app",
    "main",
    "parse_request",
    "uvicorn_settings",
]
