"""The sweep over the grid: which points run in which order, their repeats, warm-up and memory run.

Why this module exists: how a point is repeated matters as much as how one run is metered.
Each point runs ``repeats`` timed runs and, unless ``--no-memory``, one extra run with
:mod:`tracemalloc` on (tracing slows allocation, so timed runs never trace); one untimed
warm-up run per protocol fills caches (DJN tables, imports) before any timing; and the first
failing run stops its point and says why, in the records rather than as an exception.

Rules: points run smallest scenario first and, within a scenario, plain first, since plain is
every ratio's base, and a masking protocol semi-honest before active; a slow path's costs are
scaled to the point's d before they are recorded.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Sequence
from dataclasses import replace

from protocols.bench.config import FLOWER, MASKING_PROTOCOLS, BenchConfig
from protocols.bench.flower_reference import run_flower
from protocols.bench.metering import Meter
from protocols.bench.runners import RUNNERS, GridPoint, Outcome, PaillierKeys, RunContext, Scenario
from protocols.bench.statistics import CostTable, PointResult, summarise
from secagg.errors import SecAggError

__all__ = ["capped_points", "grid", "measure_point", "warm_up"]


def _scenarios(config: BenchConfig) -> list[Scenario]:
    return sorted(
        (
            Scenario(n, d, p, r)
            for n in config.clients
            for d in config.dims
            for p in config.dropouts
            for r in config.drop_at
        ),
        key=lambda s: (s.clients * s.dim, s.clients, s.dim, s.dropout, s.drop_at),
    )


def _points(config: BenchConfig, scenario: Scenario, protocol: str) -> list[GridPoint]:
    """One point per threat model for a masking protocol, one point otherwise."""
    if protocol not in MASKING_PROTOCOLS:
        return [GridPoint(scenario, protocol)]
    return [GridPoint(scenario, protocol, mode) for mode in config.threat_models]


def _runs(config: BenchConfig, point: GridPoint) -> bool:
    """Whether ``point`` runs: SecAgg only up to ``--complete-max-clients``."""
    return point.protocol != "secagg" or config.runs_complete_graph(point.scenario.clients)


def grid(config: BenchConfig, with_flower: bool) -> list[GridPoint]:
    """Grid points, smallest scenarios first; plain first within each scenario.

    A masking protocol has one point per threat model, semi-honest first (the base of its
    ``ratio_to_semi_honest``); SecAgg points above ``--complete-max-clients`` are left out
    (:func:`capped_points` lists them).

    Args:
        config: the benchmark's configuration.
        with_flower: whether the Flower reference runs at every scenario too.

    Returns:
        Every (scenario, protocol, threat model) to measure, in the order to measure them.
    """
    protocols = [*config.protocols, *([FLOWER] if with_flower else [])]
    every = [p for s in _scenarios(config) for name in protocols for p in _points(config, s, name)]
    return [point for point in every if _runs(config, point)]


def capped_points(config: BenchConfig) -> list[GridPoint]:
    """The SecAgg points :func:`grid` leaves out: n above ``--complete-max-clients``."""
    every = [p for s in _scenarios(config) for p in _points(config, s, "secagg")]
    return [p for p in every if "secagg" in config.protocols and not _runs(config, p)]


def _one_run(
    config: BenchConfig, point: GridPoint, repeat: int, keys: PaillierKeys, trace: bool
) -> Outcome:
    meter = Meter(trace_memory=trace)
    ctx = RunContext(config, point, repeat, meter, keys)
    runner = run_flower if point.protocol == FLOWER else RUNNERS[point.protocol]
    if not trace:
        return runner(ctx)
    tracemalloc.start()
    try:
        return runner(ctx)
    finally:
        tracemalloc.stop()


def _scaled(table: CostTable, factor: float) -> CostTable:
    return {key: cost.scaled(factor) for key, cost in table.items()}


def measure_point(config: BenchConfig, point: GridPoint, keys: PaillierKeys) -> PointResult:
    """Run ``repeats`` timed runs and (optionally) one memory run of one grid point.

    Args:
        config: the benchmark's configuration.
        point: the grid point.
        keys: the benchmark's Paillier key pair.

    Returns:
        The point's samples, or its status ``failed`` and the first run's error.
    """
    result = PointResult(point)
    runs = [(repeat, False) for repeat in range(config.repeats)]
    if config.memory:
        runs.append((0, True))
    for repeat, trace in runs:
        try:
            outcome = _one_run(config, point, repeat, keys, trace)
        except SecAggError as error:
            result.status, result.error = "failed", f"{type(error).__name__}: {error}"
            break
        result.measured_dim, result.setup = outcome.measured_dim, outcome.setup
        result.scale = outcome.scale or point.scenario.dim / outcome.measured_dim
        if outcome.error is not None or not outcome.correct:
            result.status, result.error = "failed", outcome.error or "wrong result"
            break
        table = _scaled(summarise(outcome), result.scale)
        if trace:
            result.memory = table
        else:
            result.samples.append(table)
    return result


def warm_up(config: BenchConfig, points: Sequence[GridPoint], keys: PaillierKeys) -> None:
    """One untimed run per protocol and threat model on its smallest point (caches, imports).

    Args:
        config: the benchmark's configuration.
        points: the grid, smallest point first.
        keys: the benchmark's Paillier key pair (generated here, before any timing).
    """
    seen: set[tuple[str, str | None]] = set()
    for point in points:
        if (point.protocol, point.threat_model) in seen:
            continue
        seen.add((point.protocol, point.threat_model))
        small = replace(point.scenario, dim=min(point.scenario.dim, 256), dropout=0.0)
        try:
            _one_run(config, replace(point, scenario=small), config.repeats, keys, trace=False)
        except SecAggError:
            pass  # The timed runs report it.
