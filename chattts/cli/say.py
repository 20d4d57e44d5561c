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
from ..errors import EmptyInputError, UsageError
from ..voices import Voice
from .args import add_load_arguments, add_voices_argument, load_chat, number
from .voice import check_voice, library, resolve_voice

if TYPE_CHECKING:
    from ..chat import Chat
    from ..params import InferCodeParams, RefineTextParams

logger = logging.getLogger("chattts")

OUT_HELP = "output file; several texts: FILE_0.ext... ('-': stdout; default output.wav)"
BOOL = argparse.BooleanOptionalAction


def _texts(raw: Sequence[str]) -> list[str]:
    texts: list[str] = []
    for t in raw:
        if t == "-":
            texts += [line.strip() for line in sys.stdin if line.strip()]
        else:
            texts.append(t)
    if not texts:
        raise UsageError("nothing to say: give texts (or - to read lines from stdin)")
    for i, t in enumerate(texts):
        if not t.strip():  # the library's error, before the model loads
            raise EmptyInputError(t, i if len(texts) > 1 else None)
    return texts


def _outputs(args: argparse.Namespace, n: int) -> tuple[list[str], str]:
    """The output paths ("-" for stdout) and the format, checked before the model loads."""
    out = args.output
    if out == "-":
        if n > 1 and not args.join:
            raise UsageError("-o - writes one stream: use --join with several texts")
        return ["-"], audio.normalize_format(args.format or "wav")
    if os.path.isdir(out) or out.endswith(("/", os.sep)):
        raise UsageError(f"{out} is a directory: give a file name, e.g. -o {_in(out)}")
    fmt = audio.normalize_format(args.format) if args.format else audio.format_from_path(out)
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise UsageError(f"output folder not found: {folder}")
    if n == 1 or args.join:
        return [out], fmt
    stem, suffix = os.path.splitext(out)
    return [f"{stem}_{i}{suffix}" for i in range(n)], fmt


def _in(folder: str) -> str:
    """``folder/output.wav``, as the user wrote the folder."""
    return folder + ("" if folder.endswith(("/", os.sep)) else os.sep) + "output.wav"


def shorten(speaker: str, keep: int = 16) -> str:
    """A speaker string for a log line: its first ``keep`` characters and ``…`` (the whole
    string is hundreds of characters; ``chattts speaker --seed N`` prints it)."""
    return speaker if len(speaker) <= keep else speaker[:keep] + "…"


def _voice(args: argparse.Namespace) -> Voice:
    """--spk, --seed or --voice NAME|MIX (checked before the model loads; a mix is made once
    the model is loaded). ``Voice()``: a random voice."""
    if args.voice is not None:
        check_voice(library(args.voices), args.voice)
        return Voice(name=args.voice)
    if args.spk is not None:
        from ..voices.speaker import decode_speaker

        decode_speaker(args.spk)  # SpeakerError names the problem
        return Voice(speaker=args.spk)
    return Voice(seed=args.seed)


def _voice_fields(chat: Chat, args: argparse.Namespace, voice: Voice) -> dict[str, Any]:
    """The ``InferCodeParams`` fields of ``voice``: its speaker string, or a library voice's
    speaker sample (``spk_smp`` + ``txt_smp``)."""
    if voice.name is not None:
        voice = resolve_voice(chat, library(args.voices), voice.name)
    if voice.sample is not None:
        return {"spk_emb": voice.speaker, "spk_smp": voice.sample, "txt_smp": voice.text}
    if isinstance(voice.speaker, str):
        return {"spk_emb": voice.speaker}
    spk = chat.sample_random_speaker(seed=voice.seed)
    seed = "" if voice.seed is None else f" (seed {voice.seed}: 'chattts speaker --seed N')"
    logger.info("speaker%s: %s", seed, shorten(spk))
    return {"spk_emb": spk}


def _params(
    args: argparse.Namespace, chat: Chat, voice: dict[str, Any]
) -> tuple[RefineTextParams, InferCodeParams]:
    show = sys.stderr.isatty()
    code: dict[str, Any] = {**voice, "show_tqdm": show}
    for key, attr in (
        ("temperature", "temperature"),
        ("top_P", "top_p"),
        ("top_K", "top_k"),
        ("max_new_token", "max_new_token"),
        ("manual_seed", "manual_seed"),
    ):
        if getattr(args, attr) is not None:
            code[key] = getattr(args, attr)
    if args.speed is not None:
        code["prompt"] = f"[speed_{args.speed}]"
    refine: dict[str, Any] = {"show_tqdm": show, "manual_seed": args.manual_seed}
    if args.refine_max_new_token is not None:
        refine["max_new_token"] = args.refine_max_new_token
    if args.refine_prompt is not None:
        refine["prompt"] = args.refine_prompt
    return chat.RefineTextParams(**refine), chat.InferCodeParams(**code)


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
        chat.pipeline.prepare(texts)  # EmptyInputError before any file is started
        _say_streamed(chat, texts, paths, fmt, rate, gap, infer)
    else:
        wavs = chat.infer(texts, **infer)
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
    voice = _voice(args)
    chat = load_chat(args)
    refine, code = _params(args, chat, _voice_fields(chat, args, voice))
    return chat, {
        "skip_refine_text": not args.refine,
        "params_refine_text": refine,
        "params_infer_code": code,
    }


def _say_played(args: argparse.Namespace, texts: list[str], player: Any) -> int:
    """Each text streamed to the audio output as it is produced, ``--gap`` between texts."""
    chat, infer = _prepared(args)
    chat.pipeline.prepare(texts)  # EmptyInputError before anything is played
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
    for chunk in chat.infer(text, stream=True, split_text=False, **infer):
        yield chunk[0]


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
    who = p.add_mutually_exclusive_group()
    who.add_argument("--spk", metavar="STRING", help="speaker string (see 'chattts speaker')")
    who.add_argument("--seed", type=int, metavar="N", help="the voice of this seed")
    who.add_argument(
        "--voice", metavar="NAME", help="a named voice or a mix ('a*0.7+b*0.3') from --voices"
    )
    add_voices_argument(p)
    s = p.add_argument_group("sampling")
    s.add_argument("--refine", action=BOOL, default=True, help="refine the text (default)")
    s.add_argument("--temperature", type=number(float, 1e-5), help="default 0.3")
    s.add_argument("--top-p", type=number(float, 0, 1), help="default 0.7")
    s.add_argument("--top-k", type=number(int, 1), help="default 20")
    s.add_argument(
        "--max-new-token",
        type=number(int, 1),
        metavar="N",
        help="code steps at most (default 2048, within the model's positions)",
    )
    s.add_argument("--refine-max-new-token", type=number(int, 1), metavar="N", help="default 384")
    s.add_argument("--refine-prompt", metavar="TOKENS", help="e.g. '[oral_2][laugh_0][break_6]'")
    s.add_argument("--speed", type=int, choices=range(10), metavar="0-9", help="[speed_N] (5)")
    s.add_argument("--manual-seed", type=int, metavar="N", help="seed of the sampling")
    add_load_arguments(p)
    p.set_defaults(func=cmd_say)


__all__ = ["add_parser", "cmd_say", "shorten"]
