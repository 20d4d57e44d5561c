"""Talk to the speech server with the official `openai` package (pip install openai).

    python examples/api/client.py "Hello from ChatTTS." -o hello.mp3
    python examples/api/client.py "Streamed as it is made." -o live.wav --format wav --stream
    python examples/api/client.py "Events." -o events.pcm --format pcm --sse --seed 7

--stream writes the file chunk by chunk as the server produces it; --sse reads the
speech.audio.delta / speech.audio.done events instead of raw audio. --seed, --temperature,
--top-p, --top-k, --refine and --max-new-token are ChatTTS extras sent in the request body.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys

from openai import OpenAI


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("text", help="what to say (at most 4096 characters)")
    p.add_argument("-o", "--output", required=True, help="audio file to write")
    p.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    p.add_argument("--api-key", default="unused", help="the server's --api-key, if it has one")
    p.add_argument("--voice", default="alloy", help="a named voice, seed_N or a speaker string")
    p.add_argument("--format", default="mp3", choices=["mp3", "opus", "aac", "flac", "wav", "pcm"])
    p.add_argument("--speed", type=float, default=1.0, help="0.25 to 4.0")
    p.add_argument("--model", default="chattts")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--stream", action="store_true", help="write the audio as it arrives")
    how.add_argument("--sse", action="store_true", help="use server-sent events")
    p.add_argument("--seed", type=int, help="sampling seed: the same request, the same audio")
    p.add_argument("--temperature", type=float)
    p.add_argument("--top-p", type=float)
    p.add_argument("--top-k", type=int)
    p.add_argument("--refine", action="store_true", help="refine the text first")
    p.add_argument("--max-new-token", type=int)
    args = p.parse_args(argv)

    extra = {
        k: v
        for k, v in {
            "seed": args.seed,
            "temperature": args.temperature,
            "top_p": args.top_p,
            "top_k": args.top_k,
            "refine": args.refine or None,
            "max_new_token": args.max_new_token,
        }.items()
        if v is not None
    }
    client = OpenAI(base_url=args.base_url, api_key=args.api_key)
    request = dict(
        model=args.model,
        input=args.text,
        voice=args.voice,
        response_format=args.format,
        speed=args.speed,
        extra_body=extra,
    )
    if args.sse:
        request["stream_format"] = "sse"
    if args.stream or args.sse:
        speech = client.audio.speech.with_streaming_response.create(**request)
        with speech as response, open(args.output, "wb") as f:
            if args.sse:
                for line in response.iter_lines():
                    if not line.startswith("data: "):
                        continue
                    event = json.loads(line[len("data: ") :])
                    if event["type"] == "speech.audio.delta":
                        f.write(base64.b64decode(event["audio"]))
                    elif event["type"] == "speech.audio.done":
                        print("usage:", event["usage"], file=sys.stderr)
            else:
                for chunk in response.iter_bytes():
                    f.write(chunk)
                    f.flush()
    else:
        response = client.audio.speech.create(**request)
        with open(args.output, "wb") as f:
            f.write(response.content)
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
