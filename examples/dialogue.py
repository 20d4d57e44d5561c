"""A two-speaker dialogue from a script with [S1]/[S2] tags, in one waveform.

    python examples/dialogue.py
    python examples/dialogue.py --script my_script.txt --s1 11 --s2 voice.wav --pause 0.5

Each turn is spoken by its speaker's voice (the same voice in every turn), turns are generated
together as one batch, and a pause separates them. Cues such as (laughs) become the model's
[laugh] token; unknown cues are dropped with a warning.
"""

from __future__ import annotations

import argparse
import logging

from chattts import Chat

SCRIPT = """
[S1] Did you finish the report?
[S2] Almost. I just need to add the charts. (laughs) They took longer than I thought.
[S1] No rush. Let's look at it together tomorrow morning.
[S2] Sounds good, see you then!
"""


def voice(value: str):
    """A seed (digits) or a path to reference audio."""
    return int(value) if value.isdigit() else value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="2Noise/ChatTTS", help="Hub repo id or model folder")
    parser.add_argument("--no-verify", action="store_true", help="accept non-official weights")
    parser.add_argument("--device", default=None)
    parser.add_argument("--script", default=None, help="a text file with [S1]/[S2] tags")
    parser.add_argument("--s1", type=voice, default=1111, help="S1's voice: a seed or audio file")
    parser.add_argument("--s2", type=voice, default=2025, help="S2's voice: a seed or audio file")
    parser.add_argument("--seed", type=int, default=7, help="seeds the sampling of the turns")
    parser.add_argument("--pause", type=float, default=0.4, help="seconds between turns")
    parser.add_argument("--max-new-tokens", type=int, default=2048)
    parser.add_argument("--out", default="dialogue.mp3")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    script = SCRIPT
    if args.script:
        with open(args.script, encoding="utf-8") as f:
            script = f.read()
    chat = Chat.from_pretrained(args.model, device=args.device, verify=not args.no_verify)
    wav = chat.generate(
        script,
        speakers={"S1": args.s1, "S2": args.s2},
        seed=args.seed,
        pause=args.pause,
        max_new_tokens=args.max_new_tokens,
        verbose=True,
    )
    chat.save_audio(args.out, wav)
    print(f"{args.out}: {wav.size / 24000:.2f} s")


if __name__ == "__main__":
    main()
