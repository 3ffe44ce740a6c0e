"""``secagg bench``: what secure aggregation costs, measured against a plain sum in the same run.

Overhead figures are only worth citing when the baseline ran on the same machine, in the same
process, on the same inputs and at the same moment. This package therefore runs a grid over
protocol, number of clients n, vector length d, dropout rate and the round at which clients drop,
and for every grid point it measures the plain sum *and* each secure protocol (SecAgg and SecAgg+
once per threat model, semi-honest and active, side by side), per party and per protocol round:
wall time (``time.perf_counter``), CPU time (``time.process_time``), bytes sent and received
(the project's wire codec, cross-checked against :class:`SimulationReport`) and peak memory
(:mod:`tracemalloc`, which numpy reports to). Each point is repeated; medians with min-max are
reported, and every overhead is a ratio to the plain-sum record of the same run (and, for an
active-model round, to the same protocol's semi-honest record), named by id.

Modules, one concept each:

- :mod:`~protocols.bench.config`: presets, :class:`BenchConfig` and its feasibility checks
  (which name the flag to change); round parameters come from the round planner.
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
- :mod:`~protocols.bench.style`: one colour, marker and line style per backend, for every plot
  of the project (``secagg train --plot`` too).

This module re-exports the public names of all of them.

The command line is not part of this package: imports flow ``protocols.cli`` ->
``protocols.bench``, never back, and ``secagg bench``'s flags, their parsing and ``main`` live
in :mod:`protocols.cli.bench` (``python -m protocols.bench`` runs that ``main``).

Kept import paths: ``add_bench_arguments``, ``config_from_args``, ``main`` and ``run_bench``
were importable from here before the command moved, so ``from protocols.bench import main``
keeps working: the module :func:`__getattr__` (PEP 562) imports them from
:mod:`protocols.cli.bench` on first use, which keeps ``import protocols.bench`` itself free of
the CLI. New code imports them from :mod:`protocols.cli.bench`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Final

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
from protocols.bench.plots import figures, write_plots
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
from protocols.bench.style import BACKEND_COLOURS, series_style
from protocols.bench.sweep import grid, measure_point

if TYPE_CHECKING:  # what the kept import paths resolve to, for type checkers only
    from protocols.cli.bench import add_bench_arguments, config_from_args, main, run_bench

#: The command line names still importable from here; :mod:`protocols.cli.bench` defines them.
_KEPT_PATHS: Final = frozenset({"add_bench_arguments", "config_from_args", "main", "run_bench"})


def __getattr__(name: str) -> object:
    """Resolve a kept import path (``from protocols.bench import main``) on first use.

    Args:
        name: the attribute asked for.

    Returns:
        The command line function of that name, from :mod:`protocols.cli.bench`.

    Raises:
        AttributeError: ``name`` is not a kept import path.
    """
    if name not in _KEPT_PATHS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value: object = getattr(importlib.import_module("protocols.cli.bench"), name)
    return value


__all__ = [
    "ALL",
    "BACKEND_COLOURS",
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
    "figures",
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
    "series_style",
    "summarise",
    "write_plots",
]
