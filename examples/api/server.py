"""Run the OpenAI-compatible speech server from Python (what `chattts serve` does).

    python examples/api/server.py --model-dir ./ChatTTS-model --port 8000
    python examples/api/server.py --model-dir tests/fixtures/tiny --no-verify --max-new-token 64

Then point any OpenAI client at http://127.0.0.1:8000/v1 (see client.py beside this file and
docs/server.md). Needs `pip install 'chattts[server]'`.
"""

from __future__ import annotations

import argparse
import logging

import uvicorn

import chattts
from chattts.server import create_app


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", help="model folder (default: the Hugging Face Hub)")
    p.add_argument(
        "--no-verify",
        dest="verify",
        action="store_false",
        help="accept checkpoints other than the official one",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--voices", help="voices JSON file or folder (name -> seed or speaker)")
    p.add_argument("--api-key", help="require this bearer token")
    p.add_argument("--max-batch", type=int, default=8, help="requests synthesised together")
    p.add_argument("--max-new-token", type=int, default=2048, help="code steps per request")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

    chat = chattts.Chat()
    chat.load(
        source="custom" if args.model_dir else "huggingface",
        custom_path=args.model_dir,
        verify=args.verify,
        raise_on_error=True,
    )
    app = create_app(
        chat,
        voices=args.voices,
        api_key=args.api_key,
        max_batch=args.max_batch,
        max_new_token=args.max_new_token,
    )
    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
