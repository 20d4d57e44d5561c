"""``chattts say``: texts or an SSML document into audio files (with captions), a stream, or
the audio output (docs/cli.md).

Every run speaks through the speech path, :meth:`chattts.Chat.speak` (whole files) or
:meth:`chattts.Chat.speak_stream` (``--stream``, ``--play``): each text is one request, its
sentences segments seeded on their own, finished (tempo, pitch, gain, loudness) and measured,
so a text sounds the same alone, joined, streamed or played, and captions follow the audio.
Whole files and their captions are written all or nothing (:mod:`.say_out`).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from .. import audio
from ..errors import EmptyInputError, SsmlWarning, UsageError
from ..voices import Voice
from .args import add_load_arguments, load_options, number
from .say_args import (
    add_finish_arguments,
    add_sampling_arguments,
    add_voice_arguments,
    voice_fields,
    voice_of,
)
from .say_out import StreamedFile, caption_bytes, joined, numbered, write_files
from .voice import check_voice, library

if TYPE_CHECKING:
    from ..audio.speech import Speech
    from ..chat import Chat
    from ..pipeline.assembler import SpeechChunk

logger = logging.getLogger("chattts")

OUT_HELP = "output file; several texts: FILE_0.ext... ('-': stdout; default output.wav)"
CAPTIONS_HELP = "write captions too: .srt, .vtt or .json (with marks); several texts: FILE_0.ext..."


def _texts(args: argparse.Namespace) -> list[str]:
    """The texts, or the SSML document as the one text; blank ones fail before the model
    loads."""
    if args.ssml is not None:
        return [_document(args.ssml)]
    texts: list[str] = []
    for t in args.text:
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


def _document(source: str) -> str:
    """The text of ``--ssml FILE`` (``-``: stdin)."""
    if source == "-":
        return sys.stdin.read()
    with open(source, encoding="utf-8") as f:
        return f.read()


def _in(folder: str) -> str:
    """``folder/output.wav``, as the user wrote the folder."""
    return folder + ("" if folder.endswith(("/", os.sep)) else os.sep) + "output.wav"


def _folder_of(path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"output folder not found: {folder}")


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
    _folder_of(out)
    return numbered(out, 1 if args.join else n), fmt


def _caption_paths(args: argparse.Namespace, n: int) -> list[Optional[str]]:
    """One caption path per output (None each without ``--captions``); the suffix says the
    format (a CaptionError names the three), checked before the model loads."""
    from ..captions.writers import caption_format

    if args.captions is None:
        return [None] * n
    caption_format(None, args.captions)
    _folder_of(args.captions)
    return list(numbered(args.captions, n))


def _check_before_load(args: argparse.Namespace, texts: Sequence[str]) -> None:
    """What can be checked before the model loads: an SSML document (its errors, with line
    and column, and its warnings, reported once, here) and its ``<voice>`` names; and that
    tempo or pitch (the options', or the document's prosody) can be changed (pedalboard)."""
    stretch = args.tempo != 1.0 or args.pitch != 0.0
    if args.ssml is not None:
        from ..ssml import Speak, parse

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SsmlWarning)
            items = [x for x in parse(texts[0]).items if isinstance(x, Speak)]
        for w in caught:
            logger.warning("%s: %s", "stdin" if args.ssml == "-" else args.ssml, w.message)
        lib = library(args.voices)
        for spec in sorted({x.voice for x in items if x.voice is not None}):
            check_voice(lib, spec)
        stretch = stretch or any(x.prosody.rate != 1 or x.prosody.pitch != 0 for x in items)
    if stretch:
        from ..audio.dsp import require_stretch

        require_stretch()


def load_chat(args: argparse.Namespace) -> Chat:
    """The model of ``say``'s options, with the voice library of ``--voices`` as its own: the
    names of ``--voice`` and of SSML ``<voice>`` elements resolve in it."""
    from ..chat import Chat  # torch and the models: only when a model is opened

    chat = Chat(voices=library(args.voices))
    chat.load_options(load_options(args), raise_on_error=True)
    return chat


def cmd_say(args: argparse.Namespace) -> int:
    texts = _texts(args)
    voice = voice_of(args)
    _check_before_load(args, texts)
    if args.play:
        if args.output is not None or args.format or args.stream or args.captions:
            raise UsageError(
                "--play plays the audio: leave out -o, --format, --stream and --captions"
            )
        from .play import Player

        player = Player(24000)  # the device is checked before the model loads
        try:
            return _say_played(args, texts, voice, player)
        finally:
            player.close()
    args.output = args.output or "output.wav"
    paths, fmt = _outputs(args, len(texts))
    captions = _caption_paths(args, len(paths))
    if args.stream and fmt == "m4a":
        raise UsageError("m4a cannot be streamed: use aac, mp3, opus, flac or wav with --stream")
    chat = load_chat(args)
    options = _options(args, chat, voice, texts)
    if args.stream:
        _say_streamed(chat, texts, paths, captions, fmt, args.gap, options)
    else:
        _say_whole(chat, texts, paths, captions, fmt, args.join, args.gap, options)
    if paths[0] != "-":  # (stdout holds the audio)
        for path in [*paths, *captions]:
            if path is not None:
                print(path)
    return 0


def _options(
    args: argparse.Namespace, chat: Chat, voice: Voice, texts: Sequence[str]
) -> dict[str, Any]:
    """``Chat.speak``'s keywords of ``say``'s options. The voice: a name of the library (it
    names the captions' voice), else the speaker string of ``--spk``, ``--seed`` or a random
    draw, the same for every text. Plain texts are checked for something to speak first."""
    if args.ssml is None:
        chat.pipeline.prepare(list(texts))  # EmptyInputError (text i) before any audio
    if voice.name is not None:
        spec = voice.name
    else:
        spec = voice_fields(chat, args.voices, voice)["spk_emb"]
    return {
        "voice": spec,
        "ssml": args.ssml is not None,
        "refine": args.refine,
        "seed": args.manual_seed,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "top_k": args.top_k,
        "max_new_token": args.max_new_token,
        "speed": args.speed,
        "refine_prompt": args.refine_prompt,
        "refine_max_new_token": args.refine_max_new_token,
        "show_tqdm": sys.stderr.isatty(),
        "tempo": args.tempo,
        "pitch": args.pitch,
        "gain": args.gain,
        "loudness": args.loudness,
        "captions": args.captions is not None,  # long sentences cut at clauses, for cues
    }


def _say_whole(
    chat: Chat,
    texts: Sequence[str],
    paths: Sequence[str],
    captions: Sequence[Optional[str]],
    fmt: str,
    join: bool,
    gap: float,
    options: dict[str, Any],
) -> None:
    """Each text spoken whole (:meth:`Chat.speak`); then every file and its captions written
    together, or none."""
    speeches: list[Speech] = []
    for text in texts:
        with _ssml_reported():
            speech = chat.speak(text, **options)
        if speech.audio.size == 0:
            _warn_silent(text)
        speeches.append(speech)
    if join:
        speeches = [joined(speeches, gap)]
    rate = speeches[0].sample_rate
    files: list[tuple[str, bytes]] = []
    for path, caption, speech in zip(paths, captions, speeches, strict=True):
        if caption is not None:
            files.append(
                (caption, caption_bytes(caption, speech.segments, speech.marks, speech.duration))
            )
        if path != "-":
            files.append((path, audio.encode_audio(speech.audio, fmt, rate)))
    write_files(files)
    if paths[0] == "-":
        sys.stdout.buffer.write(audio.encode_audio(speeches[0].audio, fmt, rate))
        sys.stdout.buffer.flush()


def _say_streamed(
    chat: Chat,
    texts: Sequence[str],
    paths: Sequence[str],
    captions: Sequence[Optional[str]],
    fmt: str,
    gap: float,
    options: dict[str, Any],
) -> None:
    """Each text streamed to its file (or all, with ``gap`` seconds between them, to one
    file) as its audio arrives; a file's captions once it is complete. A run that fails
    removes the file it was writing."""
    rate = chat.config.sample_rate
    silence = np.zeros(int(round(gap * rate)), np.float32)
    out: Optional[StreamedFile] = None
    try:
        for i, text in enumerate(texts):
            if out is None:
                n = min(i, len(paths) - 1)
                out, caption = StreamedFile(paths[n], fmt, rate), captions[n]
            elif silence.size:
                out.write(silence)
            out.mark_start()
            for chunk in _chunks(chat, text, options):
                out.write(chunk.audio, chunk.segments, chunk.marks)
            if len(paths) > 1 or i == len(texts) - 1:
                out.close()
                write_files(out.captions(caption))
                out = None
    except BaseException:
        if out is not None:
            out.abort()
        raise


def _say_played(args: argparse.Namespace, texts: list[str], voice: Voice, player: Any) -> int:
    """Each text streamed to the audio output as it is produced, ``--gap`` between texts."""
    chat = load_chat(args)
    options = _options(args, chat, voice, texts)
    gap = np.zeros(int(round(args.gap * chat.config.sample_rate)), np.float32)
    for i, text in enumerate(texts):
        if i:
            player.write(gap)
        for chunk in _chunks(chat, text, options):
            if chunk.audio.size:
                player.write(chunk.audio)
    return 0


def _chunks(chat: Chat, text: str, options: dict[str, Any]) -> Iterator[SpeechChunk]:
    """``Chat.speak_stream``'s chunks; a text that gave no audio is said."""
    samples = 0
    with _ssml_reported():
        chunks = chat.speak_stream(text, **options)  # planned here: its errors come now
    for chunk in chunks:
        samples += chunk.audio.size
        yield chunk
    if samples == 0:
        _warn_silent(text)


@contextlib.contextmanager
def _ssml_reported() -> Iterator[None]:
    """SSML warnings are not shown again in here: they were logged before the model loaded."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SsmlWarning)
        yield


def _warn_silent(text: str) -> None:
    """A text that gave no audio (the model drew its end at the first step) is said, never
    silently written as an empty file."""
    short = text if len(text) <= 60 else text[:59] + "…"
    logger.warning(
        "no audio for %r: the model ended it at its first step; try another --manual-seed", short
    )


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("say", parents=[common], help="synthesise texts into audio files")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "text", nargs="*", default=[], help="texts to speak, one file each ('-': stdin lines)"
    )
    what.add_argument("--ssml", metavar="FILE", help="speak this SSML document ('-': stdin)")
    p.add_argument("-o", "--output", metavar="FILE", help=OUT_HELP)
    p.add_argument("--captions", metavar="FILE", help=CAPTIONS_HELP)
    p.add_argument("--play", action="store_true", help="play on the audio output (no file)")
    p.add_argument("--format", help=f"default: from the suffix; {', '.join(audio.FORMATS)}")
    p.add_argument("--join", action="store_true", help="all texts into one file")
    p.add_argument("--gap", type=number(float, 0, 60), default=0.3, help="pause (0.3 s)")
    p.add_argument("--stream", action="store_true", help="write the file as the audio arrives")
    add_voice_arguments(p)
    add_sampling_arguments(p)
    add_finish_arguments(p)
    add_load_arguments(p)
    p.set_defaults(func=cmd_say)


__all__ = ["add_parser", "cmd_say", "load_chat"]
