"""The ChatTTS web interface (what `chattts webui` does), on http://127.0.0.1:7860.

    python examples/web/webui.py --model-dir ./ChatTTS-model
    python examples/web/webui.py --model-dir tests/fixtures/tiny --no-verify --port 7861

Needs `pip install 'chattts[webui]'` (Gradio) and, for streamed playback, the ffmpeg program.
Gradio's analytics are off and the page uses system fonts: nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import logging

import chattts
from chattts.webui import create_ui, launch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", help="model folder (default: the Hugging Face Hub)")
    p.add_argument(
        "--no-verify",
        dest="verify",
        action="store_false",
        help="accept checkpoints other than the official one",
    )
    p.add_argument("--voices", help="extra voice presets: a voices JSON file or folder")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

    chat = chattts.Chat()
    chat.load(
        source="custom" if args.model_dir else "huggingface",
        custom_path=args.model_dir,
        verify=args.verify,
        raise_on_error=True,
    )
    launch(create_ui(chat, args.voices), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
