"""Say a sentence with a seeded voice and save it (the Dia-style API in three lines).

python examples/simple.py
python examples/simple.py --text "Another sentence." --seed 7 --out hello.wav
python examples/simple.py --model /path/to/model_root --no-verify   # a local checkpoint
"""

from __future__ import annotations

import argparse
import logging

from chattts import Chat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="2Noise/ChatTTS", help="Hub repo id or model folder")
    parser.add_argument("--no-verify", action="store_true", help="accept non-official weights")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: best)")
    parser.add_argument(
        "--text", default="Hello! This is ChatTTS, speaking through a Dia-style API."
    )
    parser.add_argument("--seed", type=int, default=2222, help="picks the voice and the sampling")
    parser.add_argument("--max-new-tokens", type=int, default=2048)
    parser.add_argument("--out", default="simple.mp3", help="wav, mp3, flac, ogg/opus by suffix")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # verbose=True logs at INFO

    chat = Chat.from_pretrained(args.model, device=args.device, verify=not args.no_verify)
    wav = chat.generate(args.text, seed=args.seed, max_new_tokens=args.max_new_tokens, verbose=True)
    chat.save_audio(args.out, wav)
    print(f"{args.out}: {wav.size / 24000:.2f} s")


if __name__ == "__main__":
    main()
