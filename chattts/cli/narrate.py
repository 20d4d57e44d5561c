"""``chattts narrate INPUT -o OUTDIR``: a document into chaptered audio, resumable
(docs/narrate.md).

The document, the output folder (writable, not in use by another narration) and the voices
are checked before the model loads; a mistake is one line on stderr. Run again, the command
goes on where it stopped; ``--force`` starts over.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import secrets
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Optional

from .. import audio
from ..audio.finish import Finish
from ..errors import UsageError
from ..voices import Voice
from .args import add_load_arguments, load_options, number, open_chat
from .say_args import (
    add_finish_arguments,
    add_sampling_arguments,
    add_voice_arguments,
    parse_voice,
    sampling_params,
    voice_fields,
    voice_of,
)

if TYPE_CHECKING:
    from ..chat import Chat
    from ..narrate.render import NarrationProgress, Progress
    from ..narrate.segments import NarrationSettings, NarrationVoice
    from ..narrate.store import ProgressStore

logger = logging.getLogger("chattts")

#: The store's key of the random voice's seed (no voice option given): kept for resuming.
VOICE_SEED_KEY = "voice_seed"


def add_parser(
    subparsers: argparse._SubParsersAction, common_parser: argparse.ArgumentParser
) -> None:
    """Add ``narrate`` to the ``chattts`` subcommands."""
    p = subparsers.add_parser(
        "narrate",
        parents=[common_parser],
        help="narrate a document into chaptered audio (resumable)",
        description="Read a .txt, .md, .html or .epub document (or - for stdin) into one audio "
        "file per chapter, the whole book with chapter marks, captions and a manifest in "
        "OUTDIR. Run it again to go on where it stopped (docs/narrate.md).",
    )
    p.add_argument("input", metavar="INPUT", help="the document (.txt .md .html .epub, - stdin)")
    p.add_argument("-o", "--output", metavar="OUTDIR", required=True, help="output folder")
    p.add_argument("--input-format", choices=("txt", "md", "html", "epub"), help="default: suffix")
    p.add_argument("--chapter-pattern", metavar="REGEX", help="a line matching starts a chapter")
    p.add_argument("--format", default="mp3", help=f"chapter files ({', '.join(audio.FORMATS)})")
    p.add_argument("--book", choices=("m4b", "mp3", "none"), default="m4b", help="whole book")
    p.add_argument(
        "--captions",
        nargs="?",
        const="json",
        default="json",
        choices=("json", "srt", "vtt"),
        help="each chapter's captions: json (default), srt or vtt",
    )
    p.add_argument("--no-captions", dest="captions", action="store_const", const=None)
    p.add_argument(
        "--batch", type=number(int, 1, 256), default=8, metavar="N", help="segments per batch (8)"
    )
    p.add_argument("--force", action="store_true", help="start over (forget what was done)")
    p.add_argument(
        "--max-chars", type=number(int, 8, 1000), default=120, metavar="N", help="segment length"
    )
    p.add_argument(
        "--redraws", type=number(int, 0, 100), default=4, metavar="N", help="redraws of silence"
    )
    for name, default in (("sentence", 0.3), ("paragraph", 0.8), ("chapter", 2.0)):
        p.add_argument(
            f"--{name}-pause",
            type=number(float, 0, 60),
            default=default,
            metavar="S",
            help=f"silence after a {name} ({default} s)",
        )
    add_voice_arguments(p)
    p.add_argument(
        "--chapter-voice",
        action="append",
        default=[],
        metavar="N=VOICE",
        help="the voice of chapter N (from 1); repeat for more chapters",
    )
    add_sampling_arguments(p)
    add_finish_arguments(p)  # applied to each chapter
    add_load_arguments(p)
    p.set_defaults(func=cmd_narrate)


def finish_options(args: argparse.Namespace) -> Finish:
    """The finishing of each chapter: ``say``'s options (``--tempo``, ``--pitch``,
    ``--gain``, ``--loudness``)."""
    return Finish(tempo=args.tempo, pitch=args.pitch, gain=args.gain, loudness=args.loudness)


def _chapter_voices(args: argparse.Namespace, chapters: int) -> list[tuple[int, str, Voice]]:
    """(chapter number, how it was given, voice) of every ``--chapter-voice``."""
    out = []
    for item in args.chapter_voice:
        number_text, sep, spec = item.partition("=")
        if not sep or not number_text.strip().isdigit() or not spec.strip():
            raise UsageError(f"--chapter-voice {item!r}: use N=VOICE, e.g. 3=alice or 2=seed_7")
        n = int(number_text)
        if not 1 <= n <= chapters:
            raise UsageError(f"--chapter-voice {item!r}: the document has chapters 1-{chapters}")
        if any(m == n for m, _, _ in out):
            raise UsageError(f"--chapter-voice: chapter {n} is given twice")
        out.append((n, spec.strip(), parse_voice(spec.strip(), args.voices)))
    return out


def _label(spec: Optional[str], voice: Voice) -> str:
    if spec is not None and spec.isascii():
        return spec
    if spec is not None or isinstance(voice.speaker, str):
        return "speaker string"
    return f"seed_{voice.seed}"


def _voice_and_label(
    args: argparse.Namespace, voice: Voice, store: ProgressStore
) -> tuple[Voice, str]:
    """The narration's voice: the options' (``voice``), else a random seed kept in the store
    (so that a resumed run reads with the same voice)."""
    if args.voice is not None or args.spk is not None:
        return voice, _label(args.voice or args.spk, voice)
    if voice.seed is None:
        kept = store.get(VOICE_SEED_KEY)
        seed = int(kept) if kept is not None else secrets.randbelow(2**31)
        store.set(VOICE_SEED_KEY, str(seed))
        logger.info("no voice given: the voice of seed %d (kept in %s)", seed, store.path)
        voice = Voice(seed=seed)
    return voice, _label(None, voice)


def _settings(
    args: argparse.Namespace,
    chat: Chat,
    voice: tuple[Voice, str],
    chapter_voices: list[tuple[int, str, Voice]],
) -> NarrationSettings:
    from ..narrate.segments import NarrationSettings, Pauses

    refine, code = sampling_params(args, chat, {}, show_tqdm=False)
    return NarrationSettings(
        voice=_narration_voice(chat, args, *voice),
        chapter_voices=tuple(
            (n, _narration_voice(chat, args, v, _label(spec, v))) for n, spec, v in chapter_voices
        ),
        code=code,
        refine=refine if args.refine else None,
        seed=args.manual_seed if args.manual_seed is not None else 0,
        max_chars=args.max_chars,
        max_redraws=args.redraws,
        pauses=Pauses(args.sentence_pause, args.paragraph_pause, args.chapter_pause),
    )


def _narration_voice(
    chat: Chat, args: argparse.Namespace, voice: Voice, label: str
) -> NarrationVoice:
    from ..narrate.segments import NarrationVoice

    return NarrationVoice(**voice_fields(chat, args.voices, voice), label=label)


@contextlib.contextmanager
def progress_bar(enabled: bool) -> Iterator[Optional[Progress]]:
    """A tqdm bar on stderr (segments; chapters, seconds of speech, real-time factor in its
    postfix; tqdm's ETA), or None when ``enabled`` is false."""
    if not enabled:
        yield None
        return
    from tqdm.auto import tqdm

    bar = tqdm(unit="seg", desc="narrating", dynamic_ncols=True)

    def update(p: NarrationProgress) -> None:
        if bar.total != p.segments:
            bar.reset(total=p.segments)
            bar.initial = bar.n = p.segments_done
        bar.update(p.segments_done - bar.n)
        rtf = p.real_time_factor
        bar.set_postfix_str(
            f"chapters {p.chapters_done}/{p.chapters}, {p.audio_seconds:.0f} s of speech"
            + ("" if rtf is None else f", RTF {rtf:.2f}"),
            refresh=True,
        )

    try:
        yield update
    finally:
        bar.close()


def cmd_narrate(args: argparse.Namespace) -> int:
    """Run ``chattts narrate``; prints the manifest's path (and the book's)."""
    from ..narrate.book import MANIFEST, OutputOptions, check_folder
    from ..narrate.documents import load_document
    from ..narrate.narration import Narration
    from ..narrate.store import ProgressStore

    document = load_document(
        args.input, kind=args.input_format, chapter_pattern=args.chapter_pattern
    )
    output = OutputOptions(
        format=args.format,
        book=None if args.book == "none" else args.book,
        captions=args.captions,
        finish=finish_options(args),
    )
    if output.finish.stretches:  # before the model loads: pedalboard is there
        from ..audio.dsp import require_stretch

        require_stretch()
    chapter_voices = _chapter_voices(args, len(document.chapters))
    chosen = voice_of(args)
    options = load_options(args)  # a wrong model folder is one line before anything is written
    check_folder(args.output)
    with ProgressStore(args.output) as store:
        if args.force:
            store.reset()
        voice = _voice_and_label(args, chosen, store)
        chat = open_chat(options)
        settings = _settings(args, chat, voice, chapter_voices)
        narration = Narration(
            document, args.output, settings, output, batch=args.batch, store=store
        )
        with progress_bar(sys.stderr.isatty()) as bar:
            manifest = narration.run(chat, bar)
    p = narration.progress
    if p is not None:
        logger.info(
            "%d segments rendered (%.1f s of speech in %.1f s), %d redrawn",
            p.rendered_segments,
            p.rendered_seconds,
            p.elapsed,
            p.redraws,
        )
    if manifest["book"] is not None:
        print(os.path.join(args.output, manifest["book"]["file"]))
    print(os.path.join(args.output, MANIFEST))
    return 0


__all__ = ["VOICE_SEED_KEY", "add_parser", "cmd_narrate", "finish_options", "progress_bar"]
