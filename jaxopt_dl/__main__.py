"""``python -m jaxopt_dl <command> ...``: runs :func:`jaxopt_dl.cli.main`.

The commands, their flags and the registries they share live in :mod:`jaxopt_dl.cli`.
"""

import sys

from jaxopt_dl.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
