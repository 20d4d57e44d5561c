"""``python -m chattts``: the ``chattts`` command."""

from .cli import main

raise SystemExit(main())
