"""The benchmark's report: run the grid, then render what it measured as a table, JSON or CSV.

Why this module exists: a number without its machine, library versions and method is not worth
citing. :func:`execute` runs the whole grid and returns a :class:`BenchResult` that carries,
next to the records, where they came from (:func:`machine_info`, :func:`library_versions`), the
parameters of the run, the notes that say how each figure was measured or scaled, and the points
a time budget (or ``--complete-max-clients``) skipped. :func:`render_table` and
:func:`render_csv` only format it; the JSON document (:meth:`BenchResult.document`, schema
:data:`SCHEMA`) holds all of it.

Rules: the table prints one row per grid point (a masking protocol's row names its threat
model) and never a figure the records do not hold; a scaled figure is marked ``*``; ratios are
read from the records, never recomputed here. When both threat models ran, a second table sets
each active-model masking point beside its semi-honest twin: round seconds, upload bytes per
client, their ratios, and what the active-only consistency round cost.
"""

from __future__ import annotations

import csv
import datetime
import importlib.metadata
import io
import os
import platform
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from protocols.bench.config import (
    FLOWER,
    PAILLIER_PROTOCOLS,
    PLAIN,
    SEMI_HONEST,
    BenchConfig,
)
from protocols.bench.flower_reference import FLOWER_MISSING, flower_status
from protocols.bench.metering import ALL, CLIENT, METRICS, SERVER, TOTAL
from protocols.bench.runners import GridPoint, PaillierKeys
from protocols.bench.statistics import PointResult, link, point_records
from protocols.bench.sweep import capped_points, grid, measure_point, warm_up

__all__ = [
    "PROTOCOL_LABELS",
    "SCHEMA",
    "THREAT_MODEL_LABELS",
    "BenchResult",
    "execute",
    "library_versions",
    "machine_info",
    "render_csv",
    "render_table",
]

#: Schema name written into every JSON document; bump on incompatible changes.
SCHEMA: Final = "secagg-bench/2"
PROTOCOL_LABELS: Final = {
    PLAIN: "plain sum (quantize, send in the clear, add)",
    "secagg": "SecAgg, complete graph (this project)",
    "secagg+": "SecAgg+, Harary graph (this project)",
    "paillier-fresh": "Paillier packed, fresh r^n (this project)",
    "paillier-djn": "Paillier packed, DJN r^n (this project)",
    "phe": "phe 1.5 per-value Paillier (reference)",
    FLOWER: "Flower 1.42 SecAgg+ building blocks, in-process (reference)",
}
#: What each threat model of a masking record means (docs/threat-model.md has the details).
THREAT_MODEL_LABELS: Final = {
    SEMI_HONEST: "the server follows the protocol: no PKI, no consistency round, t >= 2 per "
    "neighbourhood is the client's own minimum",
    "active": "an actively malicious server: signed adverts against a trusted roster, the "
    "consistency round (3), client-checked thresholds t > (k + c) / 2, a public SecAgg+ graph",
}


@dataclass(slots=True)
class BenchResult:
    """A finished benchmark: the JSON document's parts."""

    run_id: str
    config: BenchConfig
    records: list[dict[str, Any]]
    skipped: list[dict[str, Any]]
    notes: list[str]
    flower: dict[str, Any]
    machine: dict[str, Any]
    versions: dict[str, str | None]
    started: str
    seconds: float
    keygen_seconds: float | None

    def protocol_names(self) -> list[str]:
        """The protocols this run measured, Flower included when it ran."""
        return [*self.config.protocols, *([FLOWER] if self.flower["available"] else [])]

    def document(self) -> dict[str, Any]:
        """The ``--json`` document."""
        return {
            "schema": SCHEMA,
            "run_id": self.run_id,
            "started": self.started,
            "seconds": self.seconds,
            "machine": self.machine,
            "versions": self.versions,
            "parameters": _parameters(self.config, self.keygen_seconds),
            "flower": self.flower,
            "protocols": {p: PROTOCOL_LABELS[p] for p in dict.fromkeys(self.protocol_names())},
            "threat_models": {m: THREAT_MODEL_LABELS[m] for m in self.config.threat_models},
            "notes": self.notes,
            "skipped": self.skipped,
            "records": self.records,
        }


def _parameters(config: BenchConfig, keygen_seconds: float | None) -> dict[str, Any]:
    return {
        "preset": config.preset,
        "protocols": list(config.protocols),
        "clients": list(config.clients),
        "dims": list(config.dims),
        "dropouts": list(config.dropouts),
        "drop_at": list(config.drop_at),
        "threat_models": list(config.threat_models),
        "complete_max_clients": config.complete_max_clients,
        "repeats": config.repeats,
        "threshold": config.threshold,
        "degree": config.degree,
        "value_bits": config.value_bits,
        "clip": config.clip,
        "key_bits": config.key_bits,
        "paillier_keygen_s": keygen_seconds,
        "paillier_max_dim": config.paillier_max_dim,
        "phe_max_dim": config.phe_max_dim,
        "phe_clients": config.phe_clients,
        "time_budget": config.time_budget,
        "memory": config.memory,
        "seed": config.seed,
    }


def machine_info() -> dict[str, Any]:
    """CPU count and model, OS and Python: where the numbers came from."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def library_versions() -> dict[str, str | None]:
    """Installed versions of everything the measured code paths use."""
    versions: dict[str, str | None] = {}
    for name in ("secagg", "numpy", "cryptography", "phe", "gmpy2", "flwr", "pycryptodome"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _notes(config: BenchConfig, points: Sequence[GridPoint]) -> list[str]:
    protocols = {p.protocol for p in points}
    notes = [
        "every protocol's client time includes quantizing its update; plain = quantize, send "
        "the ring vector in the clear (same codec), server adds",
        "ratios are this record's median over the median of the record named by plain_id / "
        "flower_id, measured in the same run; only 'total' records carry ratios",
        "client = mean per client (peak memory: the largest client); all = every party's "
        "time summed and every byte counted once",
        "one untimed warm-up run per protocol (and threat model) precedes timing",
    ]
    if any(p.threat_model is not None for p in points):
        notes.append(
            "secagg/secagg+ run once per threat model on the same inputs and dropouts; "
            "ratio_to_semi_honest = the active record's median over the same protocol's "
            "semi-honest record (semi_honest_id); an active round's degree k and threshold t "
            "are the planner's for an active server (see setup), so it may mask with more "
            "neighbours; its trusted setup (identity keys, roster) is out of band, not timed; "
            "a semi-honest round has no consistency round (3)"
        )
    if config.memory:
        notes.append(
            "peak memory comes from one extra run with tracemalloc on (Python and numpy "
            "allocations; GMP's own are not traced); timed runs do not trace"
        )
    if protocols & set(PAILLIER_PROTOCOLS):
        notes.append(
            f"paillier-*: measured on about {config.paillier_max_dim} values (whole "
            "ciphertexts, at least one), time and bytes scaled by the ratio of ciphertext counts; "
            f"{config.key_bits}-bit key generated once (not in the times)"
        )
    if "phe" in protocols:
        notes.append(
            f"phe: measured on a subsample of d <= {config.phe_max_dim} values and "
            f"{config.phe_clients} encrypting clients, scaled linearly to d; bytes are raw "
            "ciphertext/plaintext integers"
        )
    if FLOWER in protocols:
        notes.append(
            "flower-secagg+: Flower 1.42's SecAgg+ client stage functions and server building "
            "blocks in this process (no gRPC, no ServerApp); its defaults: clip 8, 2^22 levels, "
            "mod 2^32, int64 on the wire; bytes = protobuf size of each stage's ConfigRecord"
        )
    return notes


def execute(config: BenchConfig) -> BenchResult:
    """Run the whole grid and build its records (no output).

    Args:
        config: a validated configuration.

    Returns:
        The records, skipped points and notes of the run.
    """
    started, clock = datetime.datetime.now(datetime.timezone.utc), time.perf_counter()
    with_flower, flower_line = _flower_availability(config)
    points = grid(config, with_flower)
    keys = PaillierKeys(config.key_bits)
    run_id = uuid.uuid4().hex
    results, skipped = _run_grid(config, points, keys, clock)
    capped = f"n above --complete-max-clients {config.complete_max_clients}"
    skipped.extend(_skip_entry(point, capped) for point in capped_points(config))
    records: list[dict[str, Any]] = []
    for result in results:
        records.extend(point_records(result, run_id, len(records)))
    link(records)
    notes = _notes(config, points)
    over_budget = sum(1 for skip in skipped if skip["reason"] == _OVER_BUDGET)
    if over_budget:
        notes.append(f"time budget of {config.time_budget:g} s spent: {over_budget} points skipped")
    return BenchResult(
        run_id=run_id,
        config=config,
        records=records,
        skipped=skipped,
        notes=notes,
        flower={"available": with_flower, "reason": flower_line},
        machine=machine_info(),
        versions=library_versions(),
        started=started.isoformat(timespec="seconds"),
        seconds=time.perf_counter() - clock,
        keygen_seconds=keys.seconds,
    )


def _flower_availability(config: BenchConfig) -> tuple[bool, str]:
    """Whether the Flower reference runs, and the line that says so (or why not)."""
    available, flower_line = flower_status()
    if not config.flower_requested:
        flower_line = "flower: not requested" if available else FLOWER_MISSING
    return available and config.flower_requested, flower_line


def _run_grid(
    config: BenchConfig, points: Sequence[GridPoint], keys: PaillierKeys, clock: float
) -> tuple[list[PointResult], list[dict[str, Any]]]:
    """Warm up, then measure every point until the time budget (from ``clock``) is spent."""
    results: list[PointResult] = []
    skipped: list[dict[str, Any]] = []
    progress = _progress(len(points), config.progress)
    try:
        warm_up(config, points, keys)
        for point in points:
            elapsed = time.perf_counter() - clock
            if config.time_budget is not None and elapsed > config.time_budget:
                skipped.append(_skip_entry(point, _OVER_BUDGET))
            else:
                progress.set_postfix_str(f"{point.label()} {point.scenario.label()}")
                results.append(measure_point(config, point, keys))
            progress.update()
    finally:
        progress.close()
    return results, skipped


_OVER_BUDGET: Final = "time budget"


def _skip_entry(point: GridPoint, reason: str) -> dict[str, Any]:
    s = point.scenario
    return {
        "protocol": point.protocol,
        "threat_model": point.threat_model,
        "clients": s.clients,
        "dim": s.dim,
        "dropout": s.dropout,
        "drop_at": s.drop_at,
        "reason": reason,
    }


def _progress(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc="bench", unit="point", file=sys.stderr, disable=not enabled)


def _seconds(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 1:
        return f"{value:.2f}"
    if value >= 1e-3:
        return f"{value * 1e3:.1f}m"
    return f"{value * 1e6:.0f}u"


def _span(stats: Mapping[str, float] | None) -> str:
    if not stats:
        return "-"
    return f"{_seconds(stats['median'])} [{_seconds(stats['min'])}-{_seconds(stats['max'])}]"


def _size(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, factor in (("G", 2**30), ("M", 2**20), ("k", 2**10)):
        if value >= factor:
            return f"{value / factor:.1f}{unit}"
    return f"{value:.0f}"


def _times(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:.0f}x"
    return f"{value:.2f}x" if value < 10 else f"{value:.1f}x"


_TABLE_COLUMNS: Final = (
    ("protocol", 16),
    ("mode", 11),
    ("n", 5),
    ("d", 8),
    ("drop", 8),
    ("client s [min-max]", 22),
    ("server s [min-max]", 22),
    ("round s", 8),
    ("xplain", 8),
    ("client up", 10),
    ("xplain", 8),
    ("xflower", 8),
    ("peak client", 12),
    ("peak server", 12),
)

#: The records of one grid point by (party, round).
_Group = Mapping[tuple[str, str], Mapping[str, Any]]


def _scenario_cells(any_record: Mapping[str, Any]) -> list[str]:
    name = any_record["protocol"] + ("*" if any_record["scale"] != 1 else "")
    drop = f"{any_record['dropout']:.0%}@r{any_record['drop_at']}"
    mode = any_record["threat_model"] or "-"
    return [name, mode, str(any_record["clients"]), str(any_record["dim"]), drop]


def _row_cells(group: _Group) -> list[str]:
    any_record = next(iter(group.values()))
    scenario = _scenario_cells(any_record)
    if any_record["status"] != "ok":
        return [*scenario, f"FAILED: {any_record['error']}"]
    client, server, whole = (group.get((p, TOTAL), {}) for p in (CLIENT, SERVER, ALL))
    ratio = whole.get("ratio_to_plain") or {}
    client_ratio = client.get("ratio_to_plain") or {}
    flower = whole.get("ratio_to_flower") or {}
    return [
        *scenario,
        _span(client.get("wall_s")),
        _span(server.get("wall_s")),
        _seconds(whole["wall_s"]["median"]) if whole.get("wall_s") else "-",
        _times(ratio.get("wall_s")),
        _size(client["bytes_sent"]["median"]) + "B" if client.get("bytes_sent") else "-",
        _times(client_ratio.get("bytes_sent")),
        _times(flower.get("wall_s")) if flower else "",
        _size(client.get("peak_bytes")) + "B" if client.get("peak_bytes") else "-",
        _size(server.get("peak_bytes")) + "B" if server.get("peak_bytes") else "-",
    ]


def _format_row(cells: Sequence[str], columns: Sequence[tuple[str, int]]) -> str:
    """Cells right-aligned under their column, the first left-aligned (a short row stops)."""
    widths = [w for _, w in columns][: len(cells)]
    return " ".join(
        f"{c:>{w}}" if i else f"{c:<{w}}"
        for i, (c, w) in enumerate(zip(cells, widths, strict=True))
    )


def _groups(records: Sequence[Mapping[str, Any]]) -> dict[tuple[object, ...], dict[Any, Any]]:
    """Records by grid point (n, d, dropout, drop round, protocol, threat model)."""
    groups: dict[tuple[object, ...], dict[tuple[str, str], Mapping[str, Any]]] = {}
    for r in records:
        where = (r["clients"], r["dim"], r["dropout"], r["drop_at"], r["protocol"],
                 r["threat_model"])  # fmt: skip
        groups.setdefault(where, {})[(r["party"], r["round"])] = r
    return groups


def render_table(result: BenchResult) -> str:
    """The terminal table: one row per grid point, the threat-model comparison, the notes.

    Args:
        result: the finished benchmark.

    Returns:
        The table's text, without a final newline.
    """
    groups = _groups(result.records)
    header = " ".join(f"{title:>{width}}" for title, width in _TABLE_COLUMNS)
    lines = [header, "-" * len(header)]
    previous: tuple[object, ...] | None = None
    for point, group in groups.items():
        if previous is not None and point[:4] != previous[:4]:
            lines.append("")
        previous = point
        lines.append(_format_row(_row_cells(group), _TABLE_COLUMNS))
    return "\n".join([*lines, "", *_threat_model_table(groups), *_footer(result)])


_MODE_COLUMNS: Final = (
    ("protocol", 9),
    ("n", 5),
    ("d", 8),
    ("drop", 8),
    ("k/t semi", 9),
    ("k/t active", 10),
    ("semi s", 9),
    ("active s", 9),
    ("xsemi", 7),
    ("semi up B", 12),
    ("active up B", 12),
    ("xsemi", 7),
    ("r3 client s", 11),
    ("r3 server s", 11),
)


def _degree_threshold(record: Mapping[str, Any]) -> str:
    setup = record["setup"]
    return f"{setup.get('degree', '?')}/{setup.get('threshold', '?')}"


def _mode_cells(semi: _Group, active: _Group) -> list[str]:
    """One comparison row: the semi-honest and active figures of one point, and their ratios."""
    any_active = next(iter(active.values()))
    name, _, *scenario = _scenario_cells(any_active)
    cells = [name, *scenario]
    failed = [g for g in (semi, active) if next(iter(g.values()))["status"] != "ok"]
    if failed:
        return [*cells, f"FAILED: {next(iter(failed[0].values()))['error']}"]
    whole, client = active.get((ALL, TOTAL), {}), active.get((CLIENT, TOTAL), {})
    whole_ratio = whole.get("ratio_to_semi_honest") or {}
    client_ratio = client.get("ratio_to_semi_honest") or {}

    def median(group: _Group, party: str, round_name: str, metric: str) -> float | None:
        stats = group.get((party, round_name), {}).get(metric)
        return None if not stats else float(stats["median"])

    def exact(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}"

    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    def ratio(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}x"

    return [
        *cells,
        _degree_threshold(next(iter(semi.values()))),
        _degree_threshold(any_active),
        seconds(median(semi, ALL, TOTAL, "wall_s")),
        seconds(median(active, ALL, TOTAL, "wall_s")),
        ratio(whole_ratio.get("wall_s")),
        exact(median(semi, CLIENT, TOTAL, "bytes_sent")),
        exact(median(active, CLIENT, TOTAL, "bytes_sent")),
        ratio(client_ratio.get("bytes_sent")),
        seconds(median(active, CLIENT, "consistency", "wall_s")),
        seconds(median(active, SERVER, "consistency", "wall_s")),
    ]


def _threat_model_table(groups: Mapping[tuple[object, ...], _Group]) -> list[str]:
    """Each active-model masking point beside its semi-honest twin (nothing if none ran)."""
    rows = []
    for point, active in groups.items():
        if point[5] in (None, SEMI_HONEST):
            continue
        semi = groups.get((*point[:5], SEMI_HONEST))
        if semi is not None:
            rows.append(_format_row(_mode_cells(semi, active), _MODE_COLUMNS))
    if not rows:
        return []
    header = " ".join(f"{title:>{width}}" for title, width in _MODE_COLUMNS)
    return [
        "active against semi-honest (same run, inputs and dropouts):",
        header,
        "-" * len(header),
        *rows,
        "k/t: degree and threshold; semi s / active s: round seconds (every party's summed, "
        "median); up B: bytes a client sends (mean per finishing client, median); xsemi: "
        "active over semi-honest; r3: the consistency round (mean client, server), active only",
        "",
    ]


def _footer(result: BenchResult) -> list[str]:
    m = result.machine
    lines = [
        "mode: the threat model of a masking run (- where the protocol has one whatever the "
        "threat); client s / server s: per-client and server seconds per round, median "
        f"[min-max] over {result.config.repeats} runs; round s: every party's seconds summed; "
        "xplain: ratio to the plain sum of the same run; client up: bytes a client sends; "
        "xflower: round time over Flower's; peak: tracemalloc; * measured on a smaller d and "
        "scaled (see notes)",
        f"machine: {m['cpu_count']} x {m['cpu_model']}, Python {m['python']}; run {result.run_id}",
        result.flower["reason"],
        "protocols: " + "; ".join(f"{p} = {PROTOCOL_LABELS[p]}" for p in result.protocol_names()),
        "threat models: "
        + "; ".join(f"{m} = {THREAT_MODEL_LABELS[m]}" for m in result.config.threat_models),
    ]
    lines.extend(f"note: {note}" for note in result.notes)
    for skip in result.skipped:
        mode = "" if skip["threat_model"] is None else f"/{skip['threat_model']}"
        lines.append(
            f"skipped ({skip['reason']}): {skip['protocol']}{mode} n={skip['clients']} "
            f"d={skip['dim']} dropout={skip['dropout']:g}@r{skip['drop_at']}"
        )
    return lines


_CSV_METRICS: Final = (*METRICS, "peak_bytes")
_CSV_RATIOS: Final = ("ratio_to_plain", "ratio_to_flower", "ratio_to_semi_honest")


def render_csv(records: Sequence[Mapping[str, Any]]) -> str:
    """One CSV row per record: medians, min and max flattened, ratios as columns.

    Args:
        records: the records of a run.

    Returns:
        The CSV text, header first.
    """
    columns = [
        "id", "run_id", "protocol", "threat_model", "clients", "dim", "dropout", "drop_at",
        "dropped", "party", "round", "repeats", "measured_dim", "scale", "status", "error",
    ]  # fmt: skip
    for metric in METRICS:
        columns += [f"{metric}_median", f"{metric}_min", f"{metric}_max"]
    columns += ["peak_bytes", "plain_id", "flower_id", "semi_honest_id"]
    for which in _CSV_RATIOS:
        columns += [f"{which}_{m}" for m in _CSV_METRICS]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for record in records:
        row = {c: record.get(c) for c in columns if c in record}
        for metric in METRICS:
            for stat in ("median", "min", "max"):
                row[f"{metric}_{stat}"] = (record[metric] or {}).get(stat)
        for which in _CSV_RATIOS:
            for metric in _CSV_METRICS:
                row[f"{which}_{metric}"] = (record[which] or {}).get(metric)
        writer.writerow(row)
    return buffer.getvalue()
