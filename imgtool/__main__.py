"""``python -m imgtool``: the same as the ``imgtool`` command."""

import sys

from .cli import main

sys.exit(main())
