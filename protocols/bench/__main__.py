"""``python -m protocols.bench``: run the benchmark standalone (see :func:`main`)."""

import sys

from protocols.bench.command import main

sys.exit(main())
