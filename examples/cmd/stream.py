"""Stream one text into an audio file as it is synthesised, and report the latency.

    python examples/cmd/stream.py "A long paragraph to read aloud ..." -o story.mp3 --seed 7
    python examples/cmd/stream.py "Hi." -o hi.opus --model-dir tests/fixtures/tiny --no-verify

Each chunk of audio is encoded (chattts.audio.StreamEncoder) and appended to the file the moment
the model yields it, so a player reading the file (or a socket, in a server) can start early.
"""

from __future__ import annotations

import argparse
import time

import chattts
from chattts.audio import StreamEncoder, format_from_path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("text", help="text to speak (split into sentences, spoken in order)")
    p.add_argument(
        "-o",
        "--output",
        default="stream.mp3",
        help="output file; its suffix picks the format: .wav .mp3 .opus .ogg .flac "
        ".aac .pcm (default: stream.mp3)",
    )
    p.add_argument("--model-dir", help="model folder (default: the Hugging Face Hub)")
    p.add_argument(
        "--no-verify",
        dest="verify",
        action="store_false",
        help="accept checkpoints other than the official one",
    )
    p.add_argument("--seed", type=int, help="voice seed")
    p.add_argument("--max-new-token", type=int, default=2048, help="code steps at most")
    args = p.parse_args()

    chat = chattts.Chat()
    source = "custom" if args.model_dir else "huggingface"
    chat.load(source=source, custom_path=args.model_dir, verify=args.verify, raise_on_error=True)
    rate = chat.config.sample_rate
    params = chattts.Chat.InferCodeParams(
        spk_emb=chat.sample_random_speaker(seed=args.seed), max_new_token=args.max_new_token
    )

    encoder = StreamEncoder(format_from_path(args.output), rate)
    start, first, samples = time.perf_counter(), None, 0
    with open(args.output, "wb") as f:
        # a str gives (1, n) chunks that follow the sentences in order
        for chunk in chat.infer(
            args.text, stream=True, skip_refine_text=True, params_infer_code=params
        ):
            first = first or time.perf_counter() - start
            samples += chunk.shape[-1]
            f.write(encoder.write(chunk[0]))
            f.flush()
            print(f"{time.perf_counter() - start:6.2f} s: {samples / rate:6.2f} s of audio")
        f.write(encoder.close())
    took = time.perf_counter() - start
    if first is None:
        print("no audio was produced")
        return
    print(
        f"{args.output}: {samples / rate:.2f} s of audio; first audio after {first:.2f} s; "
        f"real-time factor {took / max(samples / rate, 1e-9):.2f}"
    )


if __name__ == "__main__":
    main()
