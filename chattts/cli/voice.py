"""``chattts voice add|list|show|rename|rm|mix``: the voice library on the command line, and
the voice of ``chattts say --voice NAME|MIX`` (docs/cli.md, "Voice library").

The library is a folder (``--voices DIR``, ``$CHATTTS_VOICES``, else the user cache; see
:mod:`chattts.voices.library`). ``chattts say --voices FILE`` still reads a voices JSON file.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Optional

from ..errors import UnknownVoiceError, UsageError
from ..voices import Voice, VoiceLibrary, VoiceResolver, default_voices_dir
from .args import VOICES_ENV, add_load_arguments, default_source, load_options, open_chat

if TYPE_CHECKING:
    from ..chat import Chat


def library(path: Optional[str]) -> VoiceLibrary:
    """The voice library of ``--voices`` (default: ``$CHATTTS_VOICES``, else the user cache)."""
    return VoiceLibrary(path or os.environ.get(VOICES_ENV) or default_voices_dir())


def check_voice(lib: VoiceLibrary, spec: str) -> None:
    """A voice name, ``seed_N``, mix or speaker string whose names all exist (checked before a
    model loads; :meth:`chattts.voices.VoiceResolver.check`).

    Raises:
        VoicesError: a malformed or too long mix, or an unknown name (a ``UsageError``).
    """
    try:
        VoiceResolver(lib).check(spec)
    except UnknownVoiceError as e:
        raise UnknownVoiceError(
            f"{e}; --voices PATH (or ${VOICES_ENV}) names the library", name=e.name
        ) from e


def resolve_voice(chat: Chat, lib: VoiceLibrary, spec: str) -> Voice:
    """The voice ``spec`` names, seeds drawn with ``chat``'s model."""
    config = chat.config.gpt
    resolver = VoiceResolver(
        lib,
        draw=chat.sample_random_speaker,
        hidden_size=config.hidden_size,
        num_vq=config.num_vq,
    )
    return resolver.voice(spec)


# ---- seeds without a model ---------------------------------------------------------------------


def spk_stat_path(args: argparse.Namespace) -> str:
    """``asset/spk_stat.pt`` of the model folder, or fetched alone from the Hub."""
    from ..config import SPK_STAT

    source = args.source or default_source(args.model_dir)
    if source == "huggingface":
        from ..assets.hub import fetch_file

        return fetch_file(SPK_STAT, args.model_dir)
    root = args.model_dir or os.getcwd()
    if not os.path.isdir(root):
        raise UsageError(f"model folder not found: {root}")
    return os.path.join(root, SPK_STAT)


def _draw(args: argparse.Namespace) -> Callable[[Optional[int]], str]:
    """Draws a seed's speaker string from the model's ``spk_stat.pt`` (no model loaded; the
    file is read on the first draw)."""
    from ..voices.speaker import SpeakerStats, encode_speaker

    stats: list[SpeakerStats] = []

    def draw(seed: Optional[int]) -> str:
        if not stats:
            stats.append(SpeakerStats.from_file(spk_stat_path(args)))
        return encode_speaker(stats[0].sample(seed))

    return draw


# ---- the commands ------------------------------------------------------------------------------


def cmd_add(args: argparse.Namespace) -> int:
    lib = library(args.voices)
    meta = {"lang": args.lang, "gender": args.gender, "notes": args.notes}
    if args.audio is not None:
        if args.text is None:
            raise UsageError("--audio needs --text, the transcript of the recording")
        lib.check_new_name(args.name, args.force)  # before the model loads
        chat = open_chat(load_options(args))
        sample = chat.sample_audio_speaker(args.audio)
        lib.add(args.name, sample=sample, text=args.text, overwrite=args.force, **meta)
    elif args.spk is not None:
        lib.add(args.name, speaker=args.spk.strip(), overwrite=args.force, **meta)
    else:
        lib.check_new_name(args.name, args.force)
        draw = _draw(args)
        lib.add(args.name, seed=args.seed, draw=draw, overwrite=args.force, **meta)
    print(args.name)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    records = library(args.voices).records()
    if args.json:
        print(json.dumps([r.describe() for r in records.values()], ensure_ascii=False))
        return 0
    for record in records.values():
        d = record.describe()
        extra = " ".join(f"{k}={d[k]}" for k in ("seed", "lang", "gender") if k in d)
        notes = f"  # {d['notes']}" if "notes" in d else ""
        print(f"{record.name}\t{record.kind}\t{extra}{notes}".rstrip())
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    record = library(args.voices).get(args.name)
    print(json.dumps({"name": record.name, **record.to_json()}, ensure_ascii=False, indent=1))
    return 0


def cmd_rename(args: argparse.Namespace) -> int:
    library(args.voices).rename(args.old, args.new)
    print(args.new)
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    library(args.voices).remove(args.name)
    return 0


def cmd_mix(args: argparse.Namespace) -> int:
    lib = library(args.voices)
    check_voice(lib, args.mix)
    voice = VoiceResolver(lib, draw=_draw(args)).voice(args.mix)
    if args.save:
        lib.add(args.save, speaker=voice.speaker, notes=f"mix: {args.mix}", overwrite=args.force)
    print(voice.speaker)
    return 0


# ---- the parser --------------------------------------------------------------------------------


def _voices_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--voices",
        metavar="DIR",
        default=None,
        help=f"voice library folder (default: ${VOICES_ENV}, else {default_voices_dir()})",
    )


def add_voice_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """The ``voice`` command and its subcommands."""
    p = sub.add_parser(
        "voice",
        parents=[common],
        help="the voice library: add, list, show, rename, rm, mix",
        description="Named voices in a folder, and weighted mixes of them (docs/cli.md).",
    )
    vs = p.add_subparsers(dest="voice_command", metavar="ACTION", required=True)
    a = vs.add_parser("add", parents=[common], help="save a voice from a seed, string or audio")
    a.add_argument("name", help="letters, digits, '_' and '-'")
    who = a.add_mutually_exclusive_group(required=True)
    who.add_argument("--seed", type=int, metavar="N", help="the voice of this seed")
    who.add_argument("--spk", metavar="STRING", help="a speaker string")
    who.add_argument("--audio", metavar="FILE", help="a recording to clone (needs --text)")
    a.add_argument("--text", help="the transcript of --audio")
    a.add_argument("--lang", help="e.g. en, zh")
    a.add_argument("--gender", help="e.g. female, male")
    a.add_argument("--notes", help="free text")
    a.add_argument("--force", action="store_true", help="replace a voice of the same name")
    add_load_arguments(a, engine=False)
    a.set_defaults(func=cmd_add)
    ls = vs.add_parser("list", parents=[common], help="list the voices")
    ls.add_argument("--json", action="store_true", help="as a JSON list")
    ls.set_defaults(func=cmd_list)
    s = vs.add_parser("show", parents=[common], help="print a voice's file")
    s.add_argument("name")
    s.set_defaults(func=cmd_show)
    r = vs.add_parser("rename", parents=[common], help="rename a voice")
    r.add_argument("old")
    r.add_argument("new")
    r.set_defaults(func=cmd_rename)
    rm = vs.add_parser("rm", parents=[common], help="delete a voice")
    rm.add_argument("name")
    rm.set_defaults(func=cmd_rm)
    m = vs.add_parser("mix", parents=[common], help="print (or --save) the speaker of a mix")
    m.add_argument("mix", help="e.g. 'alice+bob' or 'alice*0.7+bob*0.3'")
    m.add_argument("--save", metavar="NAME", help="save the mix as a voice")
    m.add_argument("--force", action="store_true", help="replace a voice of the same name")
    add_load_arguments(m, engine=False)
    m.set_defaults(func=cmd_mix)
    for q in (a, ls, s, r, rm, m):
        _voices_option(q)


__all__ = ["add_voice_parser", "check_voice", "library", "resolve_voice", "spk_stat_path"]
