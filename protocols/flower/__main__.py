"""``python -m protocols.flower DIRECTORY --clients N``: write an active-model deployment's keys.

Why this module exists: the operator of a Flower deployment needs the key files before the first
active-model round, on a machine with only this package installed; this is
:func:`protocols.flower.keys.main` as a command (one private key file per client and the
trusted roster file, see :func:`protocols.flower.keys.write_deployment_keys`).
"""

from protocols.flower.keys import main

raise SystemExit(main())
