"""The ``secagg`` command line: ``demo``, ``bench``, ``train`` and ``recommend``.

:func:`main` is the console script's entry point (``secagg = "protocols.cli:main"``). The
argparse types every command shares live in :mod:`protocols.cli.arguments` (with the option
converters of ``secagg bench``) and are re-exported here, as they were when the command was a
single module.
"""

from protocols.cli.app import main
from protocols.cli.arguments import positive_int, positive_real, probability, unit_fraction

__all__ = ["main", "positive_int", "positive_real", "probability", "unit_fraction"]
