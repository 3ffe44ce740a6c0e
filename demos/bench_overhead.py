"""What secure aggregation costs over a plain sum: ``secagg bench --preset quick``, as a script.

Runs the quick grid (under a minute on 2 cores): plain sum, SecAgg, SecAgg+, packed Paillier
(fresh and DJN randomness), phe's per-value path and, when ``flwr`` is installed, Flower's SecAgg+
building blocks side by side, every ratio taken against the plain sum of the same run. Prints
the table and writes four PNG plots to ``bench-plots/`` (needs matplotlib: ``pip install
secagg[plot]``). Extra arguments are passed on, e.g. ``--json bench.json`` or ``--repeats 5``.

Run: ``python demos/bench_overhead.py``
"""

from __future__ import annotations

import sys

from protocols.cli.bench import main

if __name__ == "__main__":
    sys.exit(main(["--preset", "quick", "--plot-dir", "bench-plots", *sys.argv[1:]]))
