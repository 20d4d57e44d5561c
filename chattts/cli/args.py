"""Command-line handling shared by every command that opens a model.

:func:`add_load_arguments` adds the model options (``--model-dir``, ``--source``,
``--no-verify``, ``--device`` and the engine's ``--dtype``, ``--quantize``, ``--compile``,
``--backend``) to a parser; :func:`load_options` turns the parsed options into one
:class:`~chattts.options.LoadOptions` (docs/cli.md, "Model options"); :func:`app_args` gives the
server and the web UI their options, parsed by ``chattts serve|webui`` or by themselves;
:func:`server_options` reads the server's own options (:class:`ServerOptions`, with their
defaults) for the plain server and for Ray Serve; :func:`open_chat` opens the model of a
:class:`~chattts.options.LoadOptions`.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Optional, Union

from ..errors import UsageError
from ..options import BACKENDS, DTYPES, QUANTIZE, SOURCES, EngineOptions, LoadOptions

if TYPE_CHECKING:
    from ..chat import Chat

NO_VERIFY_HELP = "accept other checkpoints than the official one (no SHA256 check)"
VOICES_ENV = "CHATTTS_VOICES"
KEY_ENV = "CHATTTS_API_KEY"
#: Where ``--data-dir`` comes from when not given (else a folder of the user cache).
DATA_DIR_ENV = "CHATTTS_DATA_DIR"
_ORIGIN = re.compile(r"^https?://[^/\s?#]+$")


def check_origins(origins: Sequence[str]) -> tuple[str, ...]:
    """Web origins as CORS compares them (``--cors-origin``): ``*`` or
    ``scheme://host[:port]``, with no path; duplicates dropped.

    Raises:
        UsageError: an origin with a path (a trailing ``/`` too: browsers never send one),
            a query, or a scheme other than http/https.
    """
    out = []
    for origin in origins:
        o = origin.strip()
        if o != "*" and not _ORIGIN.match(o):
            raise UsageError(
                f"--cors-origin {origin!r}: give '*' or an origin as browsers send it, "
                "scheme://host[:port] with no path (e.g. http://localhost:3000)"
            )
        out.append(o)
    return tuple(dict.fromkeys(out))


def number(kind: type, low: float, high: float = float("inf")) -> Callable[[str], Any]:
    """An argparse type: a number of ``kind`` within [low, high]."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not low <= value <= high:
            bound = f"at least {low}" if high == float("inf") else f"within [{low}, {high}]"
            raise argparse.ArgumentTypeError(f"{text}: must be {bound}")
        return value

    return parse


def add_load_arguments(
    parser: argparse.ArgumentParser, engine: bool = True
) -> argparse._ArgumentGroup:
    """Add the "model" option group to ``parser``; with ``engine``, the engine's options too.

    Returns the group (commands may add their own model options to it).
    """
    g = parser.add_argument_group("model")
    g.add_argument("--model-dir", metavar="DIR", help="model folder (huggingface: cache folder)")
    g.add_argument("--source", choices=SOURCES, help="default: custom with --model-dir")
    g.add_argument("--no-verify", dest="verify", action="store_false", help=NO_VERIFY_HELP)
    g.add_argument("--device", help="torch device: cpu, cuda, cuda:1, mps (default: auto)")
    if engine:
        g.add_argument("--dtype", choices=DTYPES, default="float32", help="compute dtype")
        g.add_argument("--quantize", choices=QUANTIZE, help="int8 weights for the GPT")
        g.add_argument("--compile", action="store_true", help="torch.compile the decode step")
        g.add_argument("--backend", choices=BACKENDS, default="auto", help="GPT backend (auto)")
        g.add_argument(
            "--ort-spinning",
            action="store_true",
            help="ONNX Runtime threads spin while idle: faster on an idle machine only",
        )
    return g


def add_voices_argument(parser: argparse.ArgumentParser) -> None:
    """``--voices PATH`` (default ``$CHATTTS_VOICES``): a voices file or folder."""
    parser.add_argument(
        "--voices",
        metavar="PATH",
        default=os.environ.get(VOICES_ENV),
        help=f"voices JSON file or folder (default: ${VOICES_ENV})",
    )


#: How the server batches requests (``ServerOptions.scheduling``).
SCHEDULING = ("continuous", "static")


@dataclass(frozen=True)
class ServerOptions:
    """The speech server's options besides the model's, with their defaults (those of
    :func:`add_server_arguments` too).

    Attributes:
        host, port: where it listens; ``host`` is also accepted in the Host header.
        api_key: require ``Authorization: Bearer KEY`` on ``/v1/*`` and the API documents.
        voices: named voices (a voices file or folder, or a dict); None: the voice library.
        max_batch: rows (segments) generated together; max_queue: segments that may wait
            (more: 429); max_new_token: the most code steps of a segment (and its default).
        scheduling: ``"continuous"`` (requests join the running generation at every step)
            or ``"static"`` (a batch runs to its end; ``batch_wait_ms``: how long its first
            request waits for others), for comparison (docs/server.md, "Scheduling").
        cors_origins: web origins whose pages may call the server (none: CORS off).
        header_timeout, body_timeout, max_connections: the connection limits
            (:class:`chattts.server.protocol.ConnectionLimits`, docs/limits.md).
        data_dir: where narration jobs are kept (None: ``$CHATTTS_DATA_DIR``, else
            ``<user cache>/chattts/server``); created with the first job.
        max_jobs: jobs queued or running at most (more: 429); job_workers: jobs running
            at once; max_job_bytes: the largest document a job takes (more: 413);
            job_ttl: hours a finished job's results are kept (docs/narrate.md, "The job API").

    Raises:
        UsageError: ``max_batch``, ``max_queue``, ``max_connections``, ``max_jobs``,
            ``job_workers`` or ``max_job_bytes`` below 1, a timeout or ``job_ttl`` that is
            not a positive number, a malformed CORS origin.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: Optional[str] = None
    voices: Union[None, str, dict[str, object]] = None
    max_batch: int = 8
    batch_wait_ms: float = 20.0
    max_queue: int = 256
    max_new_token: int = 2048
    scheduling: str = "continuous"
    cors_origins: tuple[str, ...] = ()
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 512
    data_dir: Optional[str] = None
    max_jobs: int = 16
    job_workers: int = 1
    max_job_bytes: int = 50 << 20
    job_ttl: float = 24.0

    def __post_init__(self) -> None:
        for name in ("max_batch", "max_queue", "max_connections", "max_jobs", "job_workers"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
        if self.max_job_bytes < 1:
            raise UsageError("--max-job-bytes must be at least 1")
        for name in ("header_timeout", "body_timeout", "job_ttl"):
            if not getattr(self, name) > 0:
                raise UsageError(f"--{name.replace('_', '-')} must be a positive number")
        if self.scheduling not in SCHEDULING:
            raise UsageError(f"--scheduling must be one of {', '.join(SCHEDULING)}")
        object.__setattr__(self, "cors_origins", check_origins(self.cors_origins or ()))


SERVER_DEFAULTS = ServerOptions()


def server_options(args: argparse.Namespace) -> ServerOptions:
    """The server's options of a parsed command line (missing ones: their defaults).

    Raises:
        UsageError: ``--max-batch`` or ``--max-queue`` below 1 (a Namespace made by hand).
    """
    given = {f.name: getattr(args, f.name) for f in fields(ServerOptions) if hasattr(args, f.name)}
    return ServerOptions(**given)


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """The speech server's options besides the model's (``chattts serve``, and
    ``python -m chattts.server``); :func:`server_options` reads them."""
    p, d = parser, SERVER_DEFAULTS
    p.add_argument("--host", default=d.host, help="address to listen on")
    p.add_argument("--port", type=number(int, 0, 65535), default=d.port, help=f"default {d.port}")
    p.add_argument("--api-key", default=os.environ.get(KEY_ENV), help=f"bearer token (${KEY_ENV})")
    add_voices_argument(p)
    p.add_argument(
        "--max-batch", type=number(int, 1), default=d.max_batch, help=f"batch size ({d.max_batch})"
    )
    p.add_argument(
        "--max-new-token", type=number(int, 1), default=d.max_new_token, help="code steps at most"
    )
    p.add_argument(
        "--scheduling",
        choices=SCHEDULING,
        default=d.scheduling,
        help="continuous batching (default), or static batches for comparison",
    )
    p.add_argument(
        "--batch-wait-ms",
        type=number(float, 0),
        default=d.batch_wait_ms,
        help=f"static batching's wait for more requests ({d.batch_wait_ms:g})",
    )
    p.add_argument(
        "--cors-origin",
        dest="cors_origins",
        action="append",
        metavar="ORIGIN",
        help="let pages of ORIGIN (http://host:port, or '*') call the server; repeatable",
    )
    p.add_argument(
        "--max-queue",
        type=number(int, 1),
        default=d.max_queue,
        metavar="N",
        help=f"most waiting requests before 429 ({d.max_queue})",
    )
    p.add_argument(
        "--header-timeout",
        type=number(float, 0.001),
        default=d.header_timeout,
        metavar="S",
        help=f"seconds a client may take to send a request head ({d.header_timeout:g})",
    )
    p.add_argument(
        "--body-timeout",
        type=number(float, 0.001),
        default=d.body_timeout,
        metavar="S",
        help=f"seconds a client may take to send a request body ({d.body_timeout:g})",
    )
    p.add_argument(
        "--max-connections",
        type=number(int, 1),
        default=d.max_connections,
        metavar="N",
        help=f"most open connections; more get 503 ({d.max_connections})",
    )
    add_job_arguments(p)
    from .ray_args import add_ray_arguments  # --ray, --replicas, --autoscale, --ray-address

    add_ray_arguments(p)


def add_job_arguments(parser: argparse.ArgumentParser) -> None:
    """The narration jobs' options of the server (docs/narrate.md, "The job API")."""
    g, d = parser.add_argument_group("narration jobs"), SERVER_DEFAULTS
    g.add_argument(
        "--data-dir",
        metavar="DIR",
        default=os.environ.get(DATA_DIR_ENV),
        help=f"where jobs are kept (${DATA_DIR_ENV}; default: the user cache)",
    )
    g.add_argument(
        "--max-jobs",
        type=number(int, 1),
        default=d.max_jobs,
        metavar="N",
        help=f"jobs queued or running at most; more get 429 ({d.max_jobs})",
    )
    g.add_argument(
        "--job-workers",
        type=number(int, 1),
        default=d.job_workers,
        metavar="N",
        help=f"jobs running at once ({d.job_workers})",
    )
    g.add_argument(
        "--max-job-bytes",
        type=number(int, 1),
        default=d.max_job_bytes,
        metavar="N",
        help=f"the largest document a job takes; more get 413 ({d.max_job_bytes})",
    )
    g.add_argument(
        "--job-ttl",
        type=number(float, 1e-6),
        default=d.job_ttl,
        metavar="HOURS",
        help=f"hours a finished job's results are kept ({d.job_ttl:g})",
    )


def add_webui_arguments(parser: argparse.ArgumentParser) -> None:
    """The web UI's options besides the model's (``chattts webui``, ``-m chattts.webui``)."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=number(int, 0, 65535), default=7860, help="default 7860")
    add_voices_argument(parser)


def default_source(model_dir: Optional[str]) -> str:
    """The source when none is given: ``custom`` with a model folder, ``huggingface`` without."""
    return "custom" if model_dir else "huggingface"


def check_model_dir(args: argparse.Namespace) -> str:
    """The source of parsed model options; fails early (before anything imports torch) when a
    local model folder cannot be right.

    Raises:
        UsageError: ``--source custom`` without ``--model-dir``, or a missing model folder.
    """
    model_dir: Optional[str] = getattr(args, "model_dir", None)
    source = getattr(args, "source", None) or default_source(model_dir)
    if source == "custom" and not model_dir:
        raise UsageError("--source custom needs --model-dir DIR, the model folder")
    if source == "custom" and not os.path.isdir(model_dir):  # type: ignore[arg-type]
        raise UsageError(f"model folder not found: {model_dir}")
    return source


def load_options(args: argparse.Namespace, *, force_redownload: bool = False) -> LoadOptions:
    """The :class:`LoadOptions` of parsed model options (missing engine options: defaults).

    Checks a local model folder early (:func:`check_model_dir`).

    Raises:
        UsageError: ``--source custom`` without ``--model-dir``, or a model folder that does not
            exist; an impossible engine combination (``--quantize int8 --dtype bfloat16``).
    """
    source = check_model_dir(args)
    defaults = EngineOptions()
    if getattr(args, "quantize", None) == "int8" and getattr(args, "dtype", "float32") != "float32":
        raise UsageError("--quantize int8 needs --dtype float32 (int8 weights, float32 compute)")
    try:
        engine = EngineOptions(
            dtype=getattr(args, "dtype", defaults.dtype),
            quantize=getattr(args, "quantize", defaults.quantize),
            compile=getattr(args, "compile", defaults.compile),
            backend=getattr(args, "backend", defaults.backend),
            ort_spinning=getattr(args, "ort_spinning", defaults.ort_spinning),
        )
    except ValueError as e:
        raise UsageError(str(e)) from e
    return LoadOptions(
        source=source,
        custom_path=getattr(args, "model_dir", None),
        force_redownload=force_redownload,
        verify=getattr(args, "verify", True),
        device=getattr(args, "device", None),
        engine=engine,
    )


def open_chat(options: Optional[LoadOptions] = None) -> Chat:
    """A :class:`chattts.Chat` with the models of ``options`` loaded (default: ``LoadOptions()``).

    The one way the CLI, the server and the web UI open a model.

    Raises:
        ChatTTSError, ValueError, OSError: the model cannot be fetched, verified or loaded.
    """
    from ..chat import Chat  # torch and the models: only when a model is opened

    chat = Chat()
    chat.load_options(options or LoadOptions(), raise_on_error=True)
    return chat


def load_chat(args: argparse.Namespace) -> Chat:
    """A loaded :class:`chattts.Chat` for the model options of parsed ``args``."""
    return open_chat(load_options(args))


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


__all__ = [
    "DATA_DIR_ENV",
    "KEY_ENV",
    "NO_VERIFY_HELP",
    "SERVER_DEFAULTS",
    "VOICES_ENV",
    "ServerOptions",
    "add_job_arguments",
    "add_load_arguments",
    "add_server_arguments",
    "add_voices_argument",
    "add_webui_arguments",
    "app_args",
    "check_origins",
    "check_model_dir",
    "default_source",
    "load_chat",
    "load_options",
    "number",
    "open_chat",
    "server_options",
]
