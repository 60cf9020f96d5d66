"""``python -m optnb``: the same as the ``optnb`` command."""

import sys

from optnb.cli import main

if __name__ == "__main__":
    sys.exit(main())
