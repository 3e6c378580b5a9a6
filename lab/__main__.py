"""CLI: ``python -m lab start|stop|status --help``."""

import sys

from .host import main

sys.exit(main())
