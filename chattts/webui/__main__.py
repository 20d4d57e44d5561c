"""``python -m chattts.webui``: run the web interface."""

import sys

from ..cli.main import guarded
from . import main

if __name__ == "__main__":
    sys.exit(guarded("chattts-webui", main))  # a user mistake is one line, not a traceback
