"""``secagg bench``: what secure aggregation costs, measured against a plain sum in the same run.

Overhead figures are only worth citing when the baseline ran on the same machine, in the same
process, on the same inputs and at the same moment. This package therefore runs a grid over
protocol, number of clients n, vector length d, dropout rate and the round at which clients drop,
and for every grid point it measures the plain sum *and* each secure protocol, per party and per
protocol round: wall time (``time.perf_counter``), CPU time (``time.process_time``), bytes sent
and received (the project's wire codec, cross-checked against :class:`SimulationReport`) and peak
memory (:mod:`tracemalloc`, which numpy reports to). Each point is repeated; medians with min-max
are reported, and every overhead is a ratio to the plain-sum record of the same run, named by id.

Modules, one concept each:

- :mod:`~protocols.bench.config`: presets and the validated :class:`BenchConfig`; checks name
  the flag to change, and round parameters come from the round planner.
- :mod:`~protocols.bench.metering`: :class:`Cost`, :class:`Meter` and the metered simulators and
  key holder.
- :mod:`~protocols.bench.runners`: one run of one grid point per protocol (plain, SecAgg,
  SecAgg+, packed Paillier, phe).
- :mod:`~protocols.bench.flower_reference`: Flower 1.42's SecAgg+ in the same process, when
  ``flwr`` is installed, labelled as exactly that.
- :mod:`~protocols.bench.sweep`: the sweep over the grid: point order, repeats, warm-up, memory run.
- :mod:`~protocols.bench.statistics`: per-party summaries, medians with min-max, same-run ratios.
- :mod:`~protocols.bench.report`: :func:`execute` and the table, JSON and CSV.
- :mod:`~protocols.bench.plots`: the PNG plots.
- :mod:`~protocols.bench.command`: the command line; ``add_bench_arguments`` and ``run_bench``
  are the hooks the ``secagg`` command uses, and ``main`` runs the benchmark standalone
  (``python -m protocols.bench``).

This module re-exports the public names of all of them.
"""

from protocols.bench.command import add_bench_arguments, config_from_args, main, run_bench
from protocols.bench.config import FLOWER, PLAIN, PRESETS, PROTOCOLS, BenchConfig, Preset
from protocols.bench.flower_reference import FLOWER_MISSING, flower_status
from protocols.bench.metering import (
    ALL,
    CLIENT,
    KEY_HOLDER,
    METRICS,
    PARTIES,
    ROUNDS,
    SERVER,
    TOTAL,
    UPLOAD_ROUND,
    Cost,
    Meter,
    PartyKey,
)
from protocols.bench.plots import write_plots
from protocols.bench.report import (
    SCHEMA,
    BenchResult,
    execute,
    library_versions,
    machine_info,
    render_csv,
    render_table,
)
from protocols.bench.runners import FloatArray, GridPoint, Outcome, RingArray, Scenario
from protocols.bench.statistics import PointResult, link, summarise
from protocols.bench.sweep import grid, measure_point

__all__ = [
    "ALL",
    "CLIENT",
    "FLOWER",
    "FLOWER_MISSING",
    "KEY_HOLDER",
    "METRICS",
    "PARTIES",
    "PLAIN",
    "PRESETS",
    "PROTOCOLS",
    "ROUNDS",
    "SCHEMA",
    "SERVER",
    "TOTAL",
    "UPLOAD_ROUND",
    "BenchConfig",
    "BenchResult",
    "Cost",
    "FloatArray",
    "GridPoint",
    "Meter",
    "Outcome",
    "PartyKey",
    "PointResult",
    "Preset",
    "RingArray",
    "Scenario",
    "add_bench_arguments",
    "config_from_args",
    "execute",
    "flower_status",
    "grid",
    "library_versions",
    "link",
    "machine_info",
    "main",
    "measure_point",
    "render_csv",
    "render_table",
    "run_bench",
    "summarise",
    "write_plots",
]
