"""Statistics and records: from metered runs to the rows of the table, JSON and CSV.

Why this module exists: a benchmark's claims are ratios, and a ratio is only as honest as the
two numbers it divides. This module reduces each run's meter to per (party, round) costs
(:func:`summarise`), turns a grid point's repeats into median, min and max
(:func:`point_records`), and divides every total by the record of the same run, scenario and
party that it is compared with, naming that record by id (:func:`link`): the plain sum's, the
Flower reference's, and for an active-model masking record the same protocol's semi-honest one.

Rules: ``client`` is the mean per client (peak memory: the largest client); ``all`` sums every
party's time and counts every byte once; every record names its threat model (``None`` for the
protocols that have one protocol whatever the threat); only ``total`` records carry ratios, and
a peak-memory ratio is left out whenever either side was measured on a smaller d and scaled.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from protocols.bench.config import FLOWER, PLAIN, SEMI_HONEST, dropped_count
from protocols.bench.metering import (
    ALL,
    CLIENT,
    KEY_HOLDER,
    METRICS,
    PARTIES,
    ROUNDS,
    SERVER,
    TOTAL,
    Cost,
)
from protocols.bench.runners import GridPoint, Outcome
from protocols.simulate import ROUND_NAMES

__all__ = ["CostTable", "PointResult", "link", "point_records", "summarise"]

#: Costs of one run by (party, round name).
CostTable = dict[tuple[str, str], Cost]


def _mean_cost(costs: Sequence[Cost]) -> Cost:
    count = len(costs)
    peaks = [c.peak_bytes for c in costs if c.peak_bytes is not None]
    return Cost(
        sum(c.wall_s for c in costs) / count,
        sum(c.cpu_s for c in costs) / count,
        sum(c.bytes_sent for c in costs) / count,
        sum(c.bytes_received for c in costs) / count,
        max(peaks) if peaks else None,
    )


def _sum_costs(costs: Iterable[Cost]) -> Cost:
    total = Cost()
    for cost in costs:
        total.wall_s += cost.wall_s
        total.cpu_s += cost.cpu_s
        total.bytes_sent += cost.bytes_sent
        total.bytes_received += cost.bytes_received
        if cost.peak_bytes is not None:
            total.peak_bytes = max(total.peak_bytes or 0, cost.peak_bytes)
    return total


def summarise(outcome: Outcome) -> CostTable:
    """Per (party, round) costs of one run: ``client`` is the mean over clients.

    A round's client cost is the mean over the clients that worked in that round; the client
    total is the mean over the clients that finished (each client's rounds summed). Client
    peak memory is the largest of any client. ``all`` sums every party's time and counts every
    byte once (``bytes_received`` equals ``bytes_sent``); it has no peak memory.

    Args:
        outcome: one metered run.

    Returns:
        Its costs by (party, round name), ``total`` included.
    """
    costs = outcome.meter.costs
    clients = {p for p in outcome.meter.parties() if isinstance(p, int)}
    table: CostTable = {}
    for index, name in enumerate(ROUND_NAMES):
        working = [costs[(u, index)] for u in sorted(clients) if (u, index) in costs]
        if working:
            table[(CLIENT, name)] = _mean_cost(working)
        for party in (SERVER, KEY_HOLDER):
            if (party, index) in costs:
                table[(party, name)] = replace(costs[(party, index)])
    finished = sorted(clients & outcome.finishers) or sorted(clients)
    if finished:
        per_client = [_sum_costs(c for (p, _), c in costs.items() if p == u) for u in finished]
        table[(CLIENT, TOTAL)] = _mean_cost(per_client)
    for party in (SERVER, KEY_HOLDER):
        mine = [c for (p, _), c in costs.items() if p == party]
        if mine:
            table[(party, TOTAL)] = _sum_costs(mine)
    every = _sum_costs(costs.values())
    table[(ALL, TOTAL)] = Cost(every.wall_s, every.cpu_s, every.bytes_sent, every.bytes_sent)
    return table


@dataclass(slots=True)
class PointResult:
    """Every run of one grid point: timed samples, the memory sample, status."""

    point: GridPoint
    samples: list[CostTable] = field(default_factory=list)
    memory: CostTable | None = None
    measured_dim: int = 0
    scale: float = 1.0
    setup: dict[str, object] = field(default_factory=dict)
    status: str = "ok"
    error: str | None = None


def _stats(values: Sequence[float]) -> dict[str, float]:
    return {
        "median": float(statistics.median(values)),
        "min": float(min(values)),
        "max": float(max(values)),
    }


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def point_records(result: PointResult, run_id: str, first_id: int) -> list[dict[str, Any]]:
    """One record per (party, round) of a grid point; ratios are filled in by :func:`link`.

    Args:
        result: the grid point's runs.
        run_id: the benchmark run's id, written into every record.
        first_id: the id of the first record; the others follow.

    Returns:
        The records, ordered by party then round.
    """
    scenario = result.point.scenario
    base: dict[str, Any] = {
        "run_id": run_id,
        "protocol": result.point.protocol,
        "threat_model": result.point.threat_model,
        "clients": scenario.clients,
        "dim": scenario.dim,
        "dropout": scenario.dropout,
        "drop_at": scenario.drop_at,
        "dropped": dropped_count(scenario.clients, scenario.dropout),
        "repeats": len(result.samples),
        "measured_dim": result.measured_dim or scenario.dim,
        "scale": result.scale,
        "setup": result.setup,
        "status": result.status,
        "error": result.error,
    }
    keys = sorted(
        {key for sample in result.samples for key in sample},
        key=lambda k: (PARTIES.index(k[0]), ROUNDS.index(k[1])),
    )
    if not keys:
        keys = [(ALL, TOTAL)]
    records = []
    for offset, (party, round_name) in enumerate(keys):
        record = {"id": first_id + offset, **base, "party": party, "round": round_name}
        costs = [sample.get((party, round_name), Cost()) for sample in result.samples]
        for metric in METRICS:
            record[metric] = _stats([getattr(c, metric) for c in costs]) if costs else None
        memory = result.memory.get((party, round_name)) if result.memory else None
        record["peak_bytes"] = None if memory is None else memory.peak_bytes
        record.update(plain_id=None, ratio_to_plain=None, flower_id=None, ratio_to_flower=None)
        record.update(semi_honest_id=None, ratio_to_semi_honest=None)
        records.append(record)
    return records


def _ratios(record: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, float | None]:
    ratios: dict[str, float | None] = {}
    for metric in METRICS:
        mine, theirs = record[metric], base[metric]
        ratios[metric] = _ratio(mine and mine["median"], theirs and theirs["median"])
    scaled = record["scale"] != 1 or base["scale"] != 1
    ratios["peak_bytes"] = None if scaled else _ratio(record["peak_bytes"], base["peak_bytes"])
    return ratios


def link(records: list[dict[str, Any]]) -> None:
    """Fill the ratios of every total record to the records it is compared with.

    ``ratio_to_plain`` divides by the plain sum, ``ratio_to_flower`` (SecAgg+ only) by Flower's
    SecAgg+, and ``ratio_to_semi_honest`` (active-model masking records only) by the same
    protocol in the semi-honest model. Each denominator is the record of the same run, scenario
    and party, named by ``plain_id`` / ``flower_id`` / ``semi_honest_id``; each ratio is
    numerator median / denominator median.

    Args:
        records: every record of one run, changed in place.
    """

    def key(r: Mapping[str, Any], protocol: str, mode: str | None) -> tuple[object, ...]:
        return (r["run_id"], protocol, mode, r["clients"], r["dim"], r["dropout"],
                r["drop_at"], r["party"], r["round"])  # fmt: skip

    index = {key(r, r["protocol"], r["threat_model"]): r for r in records if r["status"] == "ok"}
    for record in records:
        if record["round"] != TOTAL or record["status"] != "ok":
            continue
        plain = index.get(key(record, PLAIN, None))
        if plain is not None:
            record["plain_id"], record["ratio_to_plain"] = plain["id"], _ratios(record, plain)
        flower = index.get(key(record, FLOWER, None))
        if record["protocol"] in ("secagg+", FLOWER) and flower is not None:
            record["flower_id"], record["ratio_to_flower"] = flower["id"], _ratios(record, flower)
        if record["threat_model"] not in (None, SEMI_HONEST):
            base = index.get(key(record, record["protocol"], SEMI_HONEST))
            if base is not None:
                record["semi_honest_id"] = base["id"]
                record["ratio_to_semi_honest"] = _ratios(record, base)
