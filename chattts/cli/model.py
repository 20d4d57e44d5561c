"""``chattts speaker``, ``download`` and ``convert``: the model's files without loading it."""

from __future__ import annotations

import argparse
import logging
import os

from .args import add_load_arguments, load_options
from .voice import spk_stat_path

logger = logging.getLogger("chattts")


def cmd_speaker(args: argparse.Namespace) -> int:
    from ..voices.speaker import SpeakerStats, encode_speaker

    stats = SpeakerStats.from_file(spk_stat_path(args))
    print(encode_speaker(stats.sample(args.seed)))
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from ..assets.hub import resolve_model_root

    options = load_options(args, force_redownload=args.force)
    root = resolve_model_root(
        options.source, options.custom_path, options.force_redownload, options.verify
    )
    logger.info("the model is ready in %s", root)
    print(root)
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from ..assets.hub import resolve_model_root
    from ..generation.ort_convert import converted_gpt

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


def add_parsers(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
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


__all__ = ["add_parsers", "cmd_convert", "cmd_download", "cmd_speaker"]
