"""The ``secagg`` subcommands that need torch: ``train`` and ``recommend``.

``protocols.cli`` reaches each module here by name (``importlib``) when its command runs, so the
crypto command line works without the ``models`` extra. Every command module offers
``add_arguments(parser)`` and ``run(args) -> int``; :mod:`~models.commands.checkpoint` holds the
file ``train --save`` writes and ``recommend`` reads, :mod:`~models.commands.plotting` the PNG
training curve.
"""

import secagg  # noqa: F401  (runs the package-name check first)

__all__: list[str] = []
