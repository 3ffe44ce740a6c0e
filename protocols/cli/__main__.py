"""``python -m protocols.cli``: the ``secagg`` command without the console script."""

import sys

from protocols.cli.app import main

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
