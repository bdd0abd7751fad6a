"""``python -m loopback``: see ``loopback.cli``."""

from .cli import main

raise SystemExit(main())
