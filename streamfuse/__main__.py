"""``python -m streamfuse``: the same command line as the ``streamfuse`` script."""

from .cli import main

raise SystemExit(main())
