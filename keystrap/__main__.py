"""``python -m keystrap``: the ``keystrap`` command, where its script is not on
the PATH (a virtual environment not activated, a system without entry points)."""

import sys

from keystrap.cli.main import main

sys.exit(main())
