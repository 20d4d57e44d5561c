"""``python -m chattts.webui``: run the web interface."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
