"""``python -m routecert_torch check SPEC DIR`` and ``bench SPEC DIR``."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main(sys.argv[1:]))
