"""Synthesise texts into audio files with the library API (the `chattts say` command, by hand).

    python examples/cmd/run.py "Hello there." "A second sentence." --seed 42 -o hello --format mp3
    python examples/cmd/run.py "Hi." --model-dir tests/fixtures/tiny --no-verify --max-new-token 32

writes hello_0.mp3, hello_1.mp3... and prints the speaker string used, so the voice can be reused.
"""

from __future__ import annotations

import argparse
import logging

import chattts
from chattts.audio import FORMATS, save_audio


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("texts", nargs="+", help="texts to speak")
    p.add_argument("-o", "--output", default="output", help="file name prefix (default: output)")
    p.add_argument("--format", default="wav", choices=FORMATS, help="audio format")
    p.add_argument("--model-dir", help="model folder (default: the Hugging Face Hub)")
    p.add_argument(
        "--no-verify",
        dest="verify",
        action="store_false",
        help="accept checkpoints other than the official one",
    )
    voice = p.add_mutually_exclusive_group()
    voice.add_argument("--seed", type=int, help="voice seed")
    voice.add_argument("--spk", help="speaker string")
    p.add_argument("--no-refine", dest="refine", action="store_false", help="skip text refining")
    p.add_argument("--max-new-token", type=int, default=2048, help="code steps at most")
    p.add_argument("--manual-seed", type=int, help="sampling seed (reproducible audio)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO)

    chat = chattts.Chat()
    if args.model_dir:
        chat.load(
            source="custom", custom_path=args.model_dir, verify=args.verify, raise_on_error=True
        )
    else:
        chat.load(source="huggingface", verify=args.verify, raise_on_error=True)

    spk = args.spk or chat.sample_random_speaker(seed=args.seed)
    print("speaker:", spk)
    wavs = chat.infer(
        args.texts,
        skip_refine_text=not args.refine,
        params_infer_code=chattts.Chat.InferCodeParams(
            spk_emb=spk, max_new_token=args.max_new_token, manual_seed=args.manual_seed
        ),
    )
    rate = chat.config.sample_rate
    for i, wav in enumerate(wavs):
        path = f"{args.output}_{i}.{args.format}"
        save_audio(path, wav, rate)
        print(f"{path}: {wav.size / rate:.2f} s")


if __name__ == "__main__":
    main()
