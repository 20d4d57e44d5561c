"""Many texts in one batch: one file per text, with a progress bar.

    python examples/batch.py
    python examples/batch.py --texts lines.txt --out-dir out/ --format flac

Every text gets its own seed (so its own voice); each comes out as it would alone, cut to its
own length. On a GPU a batch costs little more than one text.
"""

from __future__ import annotations

import argparse
import logging
import os
import time

from tqdm import tqdm

from chattts import Chat

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Batches share the work of the model, not their voices.",
    "Each line gets a file of its own.",
    "[S1] A script works in a batch too. [S2] Yes, as one more item.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="2Noise/ChatTTS", help="Hub repo id or model folder")
    parser.add_argument("--no-verify", action="store_true", help="accept non-official weights")
    parser.add_argument("--device", default=None)
    parser.add_argument("--texts", default=None, help="a text file, one text per line")
    parser.add_argument("--seed", type=int, default=100, help="text i gets seed + i")
    parser.add_argument("--sample-rate", type=int, default=24000)
    parser.add_argument("--max-new-tokens", type=int, default=2048)
    parser.add_argument("--out-dir", default="batch_out")
    parser.add_argument("--format", default="wav", help="wav, mp3, flac, ogg")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    texts = TEXTS
    if args.texts:
        with open(args.texts, encoding="utf-8") as f:
            texts = [line.strip() for line in f if line.strip()]
    chat = Chat.from_pretrained(args.model, device=args.device, verify=not args.no_verify)

    bar = tqdm(desc="code steps", unit="step")

    def progress(step: int, max_steps: int) -> None:
        bar.total = max_steps
        bar.update(step - bar.n)

    start = time.perf_counter()
    wavs = chat.generate_batch(
        texts,
        seeds=[args.seed + i for i in range(len(texts))],
        sample_rate=args.sample_rate,
        max_new_tokens=args.max_new_tokens,
        callback=progress,
    )
    bar.close()
    elapsed = time.perf_counter() - start
    os.makedirs(args.out_dir, exist_ok=True)
    for i, wav in enumerate(wavs):
        path = os.path.join(args.out_dir, f"{i:03d}.{args.format}")
        chat.save_audio(path, wav, sample_rate=args.sample_rate)
        print(f"{path}: {wav.size / args.sample_rate:.2f} s  {texts[i]}")
    audio = sum(w.size for w in wavs) / args.sample_rate
    print(f"{audio:.1f} s of audio in {elapsed:.1f} s (real-time factor {elapsed / audio:.2f})")


if __name__ == "__main__":
    main()
