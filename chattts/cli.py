"""The ``chattts`` command: ``say``, ``voice``, ``speaker``, ``download``, ``serve``, ``webui``.

User mistakes (a bad option, a missing model folder, a wrong checksum, an invalid speaker string)
end with one line on stderr and a non-zero exit code, never a traceback. See docs/cli.md.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from typing import IO, TYPE_CHECKING, Any, NoReturn, Optional

import numpy as np

from . import audio
from ._appargs import (
    add_load_arguments,
    add_server_arguments,
    add_webui_arguments,
    check_model_dir,
    load_options,
    number,
    open_chat,
)
from ._sayargs import (
    add_sampling_arguments,
    add_voice_arguments,
    sampling_params,
    voice_fields,
    voice_of,
)
from .cli_voice import add_voice_parser, spk_stat_path
from .errors import ChatTTSError, ChecksumMismatchError, UsageError
from .narrate.command import add_parser as add_narrate_parser
from .voices import load_voices

if TYPE_CHECKING:
    from .chat import Chat

logger = logging.getLogger("chattts")

PROG = "chattts"
OUT_HELP = "output file; several texts: FILE_0.ext... ('-': stdout; default output.wav)"


class _Parser(argparse.ArgumentParser):
    """argparse, with errors as one line (no usage block) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def load_chat(args: argparse.Namespace) -> Chat:
    """A loaded :class:`chattts.Chat` for the model options of ``args``."""
    return open_chat(load_options(args))


# ---- say ----------------------------------------------------------------------------------------


def _texts(raw: Sequence[str]) -> list[str]:
    texts: list[str] = []
    for t in raw:
        if t == "-":
            texts += [line.strip() for line in sys.stdin if line.strip()]
        else:
            texts.append(t)
    if not texts or any(not t.strip() for t in texts):
        raise UsageError("nothing to say: give non-empty texts (or - to read lines from stdin)")
    return texts


def _outputs(args: argparse.Namespace, n: int) -> tuple[list[str], str]:
    """The output paths ("-" for stdout) and the format, checked before the model loads."""
    out = args.output
    if out == "-":
        if n > 1 and not args.join:
            raise UsageError("-o - writes one stream: use --join with several texts")
        return ["-"], audio.normalize_format(args.format or "wav")
    fmt = audio.normalize_format(args.format) if args.format else audio.format_from_path(out)
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise UsageError(f"output folder not found: {folder}")
    if n == 1 or args.join:
        return [out], fmt
    stem, suffix = os.path.splitext(out)
    return [f"{stem}_{i}{suffix}" for i in range(n)], fmt


def _open_out(path: str) -> IO[bytes]:
    return sys.stdout.buffer if path == "-" else open(path, "wb")


def _close_out(f: IO[bytes], path: str, fmt: str) -> None:
    if path == "-":
        f.flush()
        return
    f.close()
    if fmt == "wav":  # the streamed header had unknown sizes: write the real ones
        with open(path, "r+b") as g:
            audio.fix_wav_header(g)


def cmd_say(args: argparse.Namespace) -> int:
    texts = _texts(args.text)
    player = None
    if args.play:
        if args.output is not None or args.format or args.stream:
            raise UsageError("--play plays the audio: leave out -o, --format and --stream")
        from .cli_play import Player

        player = Player(24000)  # the device is checked before the model loads
        try:
            return _say_played(args, texts, player)
        finally:
            player.close()
    args.output = args.output or "output.wav"
    paths, fmt = _outputs(args, len(texts))
    if args.stream and fmt == "m4a":
        raise UsageError("m4a cannot be streamed: use aac, mp3, opus, flac or wav with --stream")
    chat, infer = _prepared(args)
    rate = chat.config.sample_rate
    gap = np.zeros(int(round(args.gap * rate)), np.float32) if args.join else None
    if args.stream:
        _say_streamed(chat, texts, paths, fmt, rate, gap, infer)
    else:
        wavs = chat.infer(texts, **infer)
        if len(wavs) != len(texts):  # texts that normalise to nothing
            raise UsageError("nothing to say: the texts hold nothing speakable")
        for text, wav in zip(texts, wavs, strict=True):
            if wav.size == 0:
                _warn_silent(text)
        if gap is not None:
            wavs = [_join(wavs, gap)]
        for path, wav in zip(paths, wavs, strict=True):
            f = _open_out(path)
            f.write(audio.encode_audio(wav, fmt, rate))
            _close_out(f, path, "")
    for path in paths:
        if path != "-":
            print(path)
    return 0


def _prepared(args: argparse.Namespace) -> tuple[Chat, dict[str, Any]]:
    """The loaded model and the ``infer`` keywords of ``say``'s options."""
    voice = voice_of(args)
    chat = load_chat(args)
    fields = voice_fields(chat, args.voices, voice)
    refine, code = sampling_params(args, chat, fields, sys.stderr.isatty())
    return chat, {
        "skip_refine_text": not args.refine,
        "params_refine_text": refine,
        "params_infer_code": code,
    }


def _say_played(args: argparse.Namespace, texts: list[str], player: Any) -> int:
    """Each text streamed to the audio output as it is produced, ``--gap`` between texts."""
    chat, infer = _prepared(args)
    gap = np.zeros(int(round(args.gap * chat.config.sample_rate)), np.float32)
    for i, text in enumerate(texts):
        if i:
            player.write(gap)
        for chunk in _chunks(chat, text, infer):
            player.write(chunk)
    return 0


def _join(wavs: list[np.ndarray], gap: np.ndarray) -> np.ndarray:
    parts = []
    for i, w in enumerate(wavs):
        parts += [gap, w] if i else [w]
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def _chunks(chat: Chat, text: str, infer: dict[str, Any]) -> Iterator[np.ndarray]:
    samples = 0
    for chunk in chat.infer(text, stream=True, split_text=False, **infer):
        samples += chunk.shape[-1]
        yield chunk[0]
    if samples == 0:
        _warn_silent(text)


def _warn_silent(text: str) -> None:
    """A text that gave no audio (the model drew its end at the first step) is said, never
    silently written as an empty file."""
    short = text if len(text) <= 60 else text[:59] + "…"
    logger.warning(
        "no audio for %r: the model ended it at its first step; try another --manual-seed", short
    )


def _say_streamed(
    chat: Chat,
    texts: list[str],
    paths: list[str],
    fmt: str,
    rate: int,
    gap: Optional[np.ndarray],
    infer: dict[str, Any],
) -> None:
    """Each text streamed to its file (or all, with gaps, to one file) as its audio arrives."""
    f = enc = None
    for i, text in enumerate(texts):
        if enc is None:
            path = paths[i]
            f, enc = _open_out(path), audio.StreamEncoder(fmt, rate)
        elif gap is not None:
            f.write(enc.write(gap))
        for chunk in _chunks(chat, text, infer):
            f.write(enc.write(chunk))
            f.flush()
        if gap is None or i == len(texts) - 1:
            f.write(enc.close())
            _close_out(f, path, fmt)
            f = enc = None


# ---- speaker, download, serve, webui ----------------------------------------------------------


def cmd_speaker(args: argparse.Namespace) -> int:
    from .speaker import SpeakerStats, encode_speaker

    stats = SpeakerStats.from_file(spk_stat_path(args))
    print(encode_speaker(stats.sample(args.seed)))
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from .assets import resolve_model_root

    options = load_options(args, force_redownload=args.force)
    root = resolve_model_root(
        options.source, options.custom_path, options.force_redownload, options.verify
    )
    logger.info("the model is ready in %s", root)
    print(root)
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from .assets import resolve_model_root
    from .generation.ort_convert import converted_gpt

    options = load_options(args)
    root = resolve_model_root(options.source, options.custom_path, False, options.verify)
    if not args.verbose:
        logger.setLevel(logging.INFO)  # what is converted, and how long it took
    precisions = ["int8", "fp32"] if args.precision == "all" else [args.precision]
    for precision in precisions:
        graph = converted_gpt(
            os.path.join(root, "asset", "gpt"), precision, args.cache_dir, rebuild=args.force
        )
        print(graph.path)
    return 0


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


# ---- parser and main ----------------------------------------------------------------------------


def _say_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("say", parents=[common], help="synthesise texts into audio files")
    p.add_argument("text", nargs="+", help="texts to speak, one file each ('-': stdin lines)")
    p.add_argument("-o", "--output", metavar="FILE", help=OUT_HELP)
    p.add_argument("--play", action="store_true", help="play on the audio output (no file)")
    p.add_argument("--format", help=f"default: from the suffix; {', '.join(audio.FORMATS)}")
    p.add_argument("--join", action="store_true", help="all texts into one file")
    p.add_argument("--gap", type=number(float, 0, 60), default=0.3, help="pause (0.3 s)")
    p.add_argument("--stream", action="store_true", help="write the file as the audio arrives")
    add_voice_arguments(p)
    add_sampling_arguments(p)
    add_load_arguments(p)
    p.set_defaults(func=cmd_say)


def _app_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("serve", parents=[common], help="OpenAI-compatible speech server")
    add_load_arguments(p)
    add_server_arguments(p)
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("webui", parents=[common], help="browser interface (Gradio)")
    add_load_arguments(p)
    add_webui_arguments(p)
    p.set_defaults(func=cmd_webui)


def build_parser() -> argparse.ArgumentParser:
    """The ``chattts`` argument parser."""
    parser = _Parser(prog=PROG, description="ChatTTS text-to-speech (docs/cli.md).")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress (INFO)")
    common = _Parser(add_help=False)
    common.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log progress (INFO)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _say_parser(sub, common)
    add_narrate_parser(sub, common)
    p = sub.add_parser(
        "speaker",
        parents=[common],
        help="print a speaker string",
        description="Print the speaker string of a seed (reads spk_stat.pt).",
    )
    p.add_argument("--seed", type=int, metavar="N", help="seed of the voice (default: random)")
    add_load_arguments(p, engine=False)
    p.set_defaults(func=cmd_speaker)
    p = sub.add_parser(
        "download",
        parents=[common],
        help="fetch and verify the model",
        description="Fetch and verify the model files; prints the model folder.",
    )
    add_load_arguments(p, engine=False)
    p.add_argument("--force", action="store_true", help="download again even if present")
    p.set_defaults(func=cmd_download)
    p = sub.add_parser(
        "convert",
        parents=[common],
        help="convert the GPT for ONNX Runtime ahead of time",
        description="Convert the model's GPT to the ONNX Runtime graph that quantize=int8 on "
        "the CPU runs (done once per checkpoint, cached; docs/engine.md). Prints its path.",
    )
    add_load_arguments(p, engine=False)
    p.add_argument("--precision", choices=["int8", "fp32", "all"], default="int8")
    p.add_argument("--cache-dir", metavar="DIR", help="default: ~/.cache/chattts/onnx")
    p.add_argument("--force", action="store_true", help="convert again even if cached")
    p.set_defaults(func=cmd_convert)
    add_voice_parser(sub, common)
    _app_parsers(sub, common)
    return parser


def _message(e: BaseException) -> str:
    if isinstance(e, ChecksumMismatchError):
        return (
            f"{e.path}: SHA256 mismatch (expected {e.expected}, found {e.found}); the file "
            "is corrupt or not the official checkpoint (--no-verify loads other checkpoints)"
        )
    if isinstance(e, OSError) and e.filename and e.strerror:
        return f"{e.filename}: {e.strerror}"
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


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


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except (ChatTTSError, ValueError, OSError) as e:
        logger.debug("details", exc_info=True)
        print(f"{PROG}: error: {_message(e)}", file=sys.stderr)
        return 1


__all__ = ["PROG", "UsageError", "build_parser", "load_chat", "load_voices", "main"]
