"""``python -m hcl_core``: see :mod:`hcl_core.cli`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
