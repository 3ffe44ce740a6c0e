"""The ``secagg`` command line: ``demo``, ``bench``, ``train`` and ``recommend``.

:func:`main` is the console script's entry point (``secagg = "protocols.cli:main"``). The
argparse types every command shares live in :mod:`protocols.cli.arguments` (with the option
converters of ``secagg bench``) and are re-exported here, as they were when the command was a
single module.
"""

from collections.abc import Sequence

from protocols.cli.arguments import positive_int, positive_real, probability, unit_fraction


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``secagg`` console script (see :func:`protocols.cli.app.main`).

    The commands are imported on first use, so that :mod:`protocols.cli.arguments` can serve
    other packages (``models``' ``secagg train`` options) without importing every command.
    """
    from protocols.cli.app import main as run

    return run(argv)


__all__ = ["main", "positive_int", "positive_real", "probability", "unit_fraction"]
