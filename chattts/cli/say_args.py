"""The voice and sampling options of the commands that speak (``chattts say``, ``chattts
narrate``): the option groups, and what they become once a model is loaded (docs/cli.md).

:func:`add_voice_arguments` adds ``--spk | --seed | --voice`` and ``--voices``;
:func:`voice_of` checks them before the model loads; :func:`voice_fields` makes the
``InferCodeParams`` voice fields with the loaded model. :func:`add_sampling_arguments` adds the
sampling group and :func:`sampling_params` turns it into the two passes' parameters.
"""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING, Any, Optional

from ..voices import Voice
from .args import add_voices_argument, number
from .voice import check_voice, library, resolve_voice

if TYPE_CHECKING:
    from ..chat import Chat
    from ..params import InferCodeParams, RefineTextParams

logger = logging.getLogger("chattts")

BOOL = argparse.BooleanOptionalAction
VOICE_HELP = "a voice from --voices (name or mix 'a*0.7+b*0.3'), seed_N, or a speaker string"


def add_voice_arguments(p: argparse.ArgumentParser) -> None:
    """``--spk STRING | --seed N | --voice VOICE`` and ``--voices PATH``."""
    who = p.add_mutually_exclusive_group()
    who.add_argument("--spk", metavar="STRING", help="speaker string (see 'chattts speaker')")
    who.add_argument("--seed", type=int, metavar="N", help="the voice of this seed")
    who.add_argument("--voice", metavar="VOICE", help=VOICE_HELP)
    add_voices_argument(p)


def add_sampling_arguments(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The "sampling" group: refine on/off and the two passes' sampling options."""
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
    return s


def add_finish_arguments(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The "finishing" group (docs/captions.md, "Finishing"): ``--tempo``, ``--pitch``,
    ``--gain``, ``--loudness``, each bounded by :class:`~chattts.audio.Finish`'s range."""
    from ..audio.finish import RANGES

    f = p.add_argument_group("finishing")
    f.add_argument(
        "--tempo",
        type=number(float, *RANGES["tempo"]),
        default=1.0,
        metavar="FACTOR",
        help="exact speed, pitch kept: 2 halves the duration (0.25-4; needs chattts[stretch])",
    )
    f.add_argument(
        "--pitch",
        type=number(float, *RANGES["pitch"]),
        default=0.0,
        metavar="SEMITONES",
        help="pitch shift, duration kept (-12 to 12; needs chattts[stretch])",
    )
    f.add_argument(
        "--gain", type=number(float, *RANGES["gain"]), default=0.0, metavar="DB", help="-60 to 40"
    )
    f.add_argument(
        "--loudness",
        type=number(float, *RANGES["loudness"]),
        metavar="LUFS",
        help="normalise to this integrated loudness (-70 to 0; e.g. -16), peaks kept under -1 dBTP",
    )
    return f


def parse_voice(spec: str, voices: Optional[str]) -> Voice:
    """A ``--voice`` value, checked before the model loads
    (:meth:`chattts.voices.VoiceResolver.check`): a name or mix of the voice library
    ``voices`` (which wins), ``seed_N``, or a speaker string.

    Raises:
        VoicesError: an unknown name, a malformed or too long mix, a bad speaker string.
    """
    check_voice(library(voices), spec)
    return Voice(name=spec)


def voice_of(args: argparse.Namespace) -> Voice:
    """--spk, --seed or --voice (checked before the model loads; a mix is made once the
    model is loaded). ``Voice()``: a random voice."""
    if args.voice is not None:
        return parse_voice(args.voice, args.voices)
    if args.spk is not None:
        from ..voices.speaker import decode_speaker

        decode_speaker(args.spk)  # SpeakerError names the problem
        return Voice(speaker=args.spk)
    return Voice(seed=args.seed)


def shorten(speaker: str, keep: int = 16) -> str:
    """A speaker string for a log line: its first ``keep`` characters and ``…`` (the whole
    string is hundreds of characters; ``chattts speaker --seed N`` prints it)."""
    return speaker if len(speaker) <= keep else speaker[:keep] + "…"


def voice_fields(chat: Chat, voices: Optional[str], voice: Voice) -> dict[str, Any]:
    """The ``InferCodeParams`` fields of ``voice``: its speaker string, or a library voice's
    speaker sample (``spk_smp`` + ``txt_smp``). A seed (or no voice: a random one) is drawn
    with ``chat``'s model."""
    if voice.name is not None:
        voice = resolve_voice(chat, library(voices), voice.name)
    if voice.sample is not None:
        return {"spk_emb": voice.speaker, "spk_smp": voice.sample, "txt_smp": voice.text}
    if isinstance(voice.speaker, str):
        return {"spk_emb": voice.speaker}
    spk = chat.sample_random_speaker(seed=voice.seed)
    seed = "" if voice.seed is None else f" (seed {voice.seed}: 'chattts speaker --seed N')"
    logger.info("speaker%s: %s", seed, shorten(spk))
    return {"spk_emb": spk}


def sampling_params(
    args: argparse.Namespace, chat: Chat, voice: dict[str, Any], show_tqdm: bool
) -> tuple[RefineTextParams, InferCodeParams]:
    """The refine and code passes' parameters of the sampling options, with ``voice``'s
    fields (:func:`voice_fields`) in the code pass's."""
    code: dict[str, Any] = {**voice, "show_tqdm": show_tqdm}
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
    refine: dict[str, Any] = {"show_tqdm": show_tqdm, "manual_seed": args.manual_seed}
    if args.refine_max_new_token is not None:
        refine["max_new_token"] = args.refine_max_new_token
    if args.refine_prompt is not None:
        refine["prompt"] = args.refine_prompt
    return chat.RefineTextParams(**refine), chat.InferCodeParams(**code)


__all__ = [
    "VOICE_HELP",
    "add_finish_arguments",
    "add_sampling_arguments",
    "add_voice_arguments",
    "parse_voice",
    "sampling_params",
    "shorten",
    "voice_fields",
    "voice_of",
]
