"""``python -m protocols.bench``: run the benchmark standalone (:func:`protocols.cli.bench.main`).

The command line lives in :mod:`protocols.cli.bench`; it is imported when this entry point runs,
not when :mod:`protocols.bench` is imported, so the library keeps no import of the CLI.
"""

import sys


def _main() -> int:
    from protocols.cli.bench import main

    return main()


sys.exit(_main())
