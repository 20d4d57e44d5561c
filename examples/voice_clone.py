"""Clone a voice from reference speech (an audio file and, ideally, its transcript).

    python examples/voice_clone.py --prompt me.wav --prompt-text "What I say in me.wav."
    python examples/voice_clone.py        # no prompt: makes one with a seeded voice first

The reference is read with FFmpeg (any format), resampled to 24 kHz and encoded by the DVAE into
a speaker sample (``spk_smp``); its transcript becomes ``txt_smp``. 5 to 10 seconds of clean
speech work best.
"""

from __future__ import annotations

import argparse
import logging

from chattts import Chat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="2Noise/ChatTTS", help="Hub repo id or model folder")
    parser.add_argument("--no-verify", action="store_true", help="accept non-official weights")
    parser.add_argument("--device", default=None)
    parser.add_argument("--prompt", default=None, help="reference speech (any audio file)")
    parser.add_argument("--prompt-text", default=None, help="what the reference says")
    parser.add_argument("--text", default="This sentence is spoken in the reference voice.")
    parser.add_argument("--seed", type=int, default=1, help="seeds the sampling")
    parser.add_argument("--max-new-tokens", type=int, default=2048)
    parser.add_argument("--out", default="voice_clone.wav")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    chat = Chat.from_pretrained(args.model, device=args.device, verify=not args.no_verify)
    prompt, prompt_text = args.prompt, args.prompt_text
    if prompt is None:
        prompt_text = "I am the reference voice, recorded for cloning."
        reference = chat.generate(prompt_text, seed=4242, max_new_tokens=args.max_new_tokens)
        prompt = "reference.wav"
        chat.save_audio(prompt, reference)
        print(f"{prompt}: the reference, made with seed 4242")

    wav = chat.generate(
        args.text,
        audio_prompt=prompt,
        audio_prompt_text=prompt_text,
        seed=args.seed,
        max_new_tokens=args.max_new_tokens,
        verbose=True,
    )
    chat.save_audio(args.out, wav)
    print(f"{args.out}: {wav.size / 24000:.2f} s in the voice of {prompt}")


if __name__ == "__main__":
    main()
