"""``python -m chattts.server``: run the OpenAI-compatible speech server."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
