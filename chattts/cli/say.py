"""``chattts say``: texts into audio files, a stream, or the audio output (docs/cli.md)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from typing import IO, TYPE_CHECKING, Any, Optional

import numpy as np

from .. import audio
from ..errors import UsageError
from .args import add_load_arguments, load_chat, number
from .say_args import (
    add_sampling_arguments,
    add_voice_arguments,
    sampling_params,
    voice_fields,
    voice_of,
)

if TYPE_CHECKING:
    from ..chat import Chat

logger = logging.getLogger("chattts")

OUT_HELP = "output file; several texts: FILE_0.ext... ('-': stdout; default output.wav)"


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
        from .play import Player

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


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
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


__all__ = ["add_parser", "cmd_say"]
