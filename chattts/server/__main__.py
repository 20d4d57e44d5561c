"""``python -m chattts.server``: run the OpenAI-compatible speech server."""

import sys

from ..cli.main import guarded
from . import main

if __name__ == "__main__":
    sys.exit(guarded("chattts-server", main))  # a user mistake is one line, not a traceback
