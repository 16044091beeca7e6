"""``python -m var_utils``: the command line of :mod:`var_utils.apps.cli`."""

import sys

from .apps.cli import main

if __name__ == "__main__":
    sys.exit(main())
