"""``python -m relink_lib``: see :mod:`relink_lib.cli`."""

import sys

from .cli import main

sys.exit(main())
