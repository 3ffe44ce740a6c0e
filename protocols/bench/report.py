"""The benchmark's report: run the grid, then render what it measured as a table, JSON or CSV.

Why this module exists: a number without its machine, library versions and method is not worth
citing. :func:`execute` runs the whole grid and returns a :class:`BenchResult` that carries,
next to the records, where they came from (:func:`machine_info`, :func:`library_versions`), the
parameters of the run, the notes that say how each figure was measured or scaled, and the points
a time budget skipped. :func:`render_table` and :func:`render_csv` only format it; the JSON
document (:meth:`BenchResult.document`, schema :data:`SCHEMA`) holds all of it.

Rules: the table prints one row per grid point and never a figure the records do not hold; a
scaled figure is marked ``*``; ratios are read from the records, never recomputed here.
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

from protocols.bench.config import FLOWER, PAILLIER_PROTOCOLS, PLAIN, BenchConfig
from protocols.bench.flower_reference import FLOWER_MISSING, flower_status
from protocols.bench.metering import ALL, CLIENT, METRICS, SERVER, TOTAL
from protocols.bench.runners import GridPoint, PaillierKeys
from protocols.bench.statistics import PointResult, link, point_records
from protocols.bench.sweep import grid, measure_point, warm_up

__all__ = [
    "PROTOCOL_LABELS",
    "SCHEMA",
    "BenchResult",
    "execute",
    "library_versions",
    "machine_info",
    "render_csv",
    "render_table",
]

#: Schema name written into every JSON document; bump on incompatible changes.
SCHEMA: Final = "secagg-bench/1"
PROTOCOL_LABELS: Final = {
    PLAIN: "plain sum (quantize, send in the clear, add)",
    "secagg": "SecAgg, complete graph (this project)",
    "secagg+": "SecAgg+, Harary graph (this project)",
    "paillier-fresh": "Paillier packed, fresh r^n (this project)",
    "paillier-djn": "Paillier packed, DJN r^n (this project)",
    "phe": "phe 1.5 per-value Paillier (reference)",
    FLOWER: "Flower 1.42 SecAgg+ building blocks, in-process (reference)",
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
        "one untimed warm-up run per protocol precedes timing",
    ]
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
    records: list[dict[str, Any]] = []
    for result in results:
        records.extend(point_records(result, run_id, len(records)))
    link(records)
    notes = _notes(config, points)
    if skipped:
        notes.append(
            f"time budget of {config.time_budget:g} s spent: {len(skipped)} points skipped"
        )
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
                skipped.append(_skip_entry(point))
            else:
                progress.set_postfix_str(f"{point.protocol} {point.scenario.label()}")
                results.append(measure_point(config, point, keys))
            progress.update()
    finally:
        progress.close()
    return results, skipped


def _skip_entry(point: GridPoint) -> dict[str, Any]:
    s = point.scenario
    return {
        "protocol": point.protocol,
        "clients": s.clients,
        "dim": s.dim,
        "dropout": s.dropout,
        "drop_at": s.drop_at,
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


def _row_cells(group: Mapping[tuple[str, str], Mapping[str, Any]]) -> list[str]:
    any_record = next(iter(group.values()))
    name = any_record["protocol"] + ("*" if any_record["scale"] != 1 else "")
    drop = f"{any_record['dropout']:.0%}@r{any_record['drop_at']}"
    scenario = [name, str(any_record["clients"]), str(any_record["dim"]), drop]
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


def render_table(result: BenchResult) -> str:
    """The terminal table: one row per grid point, then the notes.

    Args:
        result: the finished benchmark.

    Returns:
        The table's text, without a final newline.
    """
    groups: dict[tuple[object, ...], dict[tuple[str, str], Mapping[str, Any]]] = {}
    for r in result.records:
        where = (r["clients"], r["dim"], r["dropout"], r["drop_at"], r["protocol"])
        groups.setdefault(where, {})[(r["party"], r["round"])] = r
    header = " ".join(f"{title:>{width}}" for title, width in _TABLE_COLUMNS)
    lines = [header, "-" * len(header)]
    previous: tuple[object, ...] | None = None
    for point, group in groups.items():
        if previous is not None and point[:4] != previous[:4]:
            lines.append("")
        previous = point
        cells = _row_cells(group)
        widths = [w for _, w in _TABLE_COLUMNS][: len(cells)]
        lines.append(
            " ".join(
                f"{c:>{w}}" if i else f"{c:<{w}}"
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
        )
    return "\n".join([*lines, "", *_footer(result)])


def _footer(result: BenchResult) -> list[str]:
    m = result.machine
    lines = [
        "client s / server s: per-client and server seconds per round, median [min-max] over "
        f"{result.config.repeats} runs; round s: every party's seconds summed; xplain: ratio to "
        "the plain sum of the same run; client up: bytes a client sends; xflower: round time "
        "over Flower's; peak: tracemalloc; * measured on a smaller d and scaled (see notes)",
        f"machine: {m['cpu_count']} x {m['cpu_model']}, Python {m['python']}; run {result.run_id}",
        result.flower["reason"],
        "protocols: " + "; ".join(f"{p} = {PROTOCOL_LABELS[p]}" for p in result.protocol_names()),
    ]
    lines.extend(f"note: {note}" for note in result.notes)
    for skip in result.skipped:
        lines.append(
            f"skipped (time budget): {skip['protocol']} n={skip['clients']} d={skip['dim']} "
            f"dropout={skip['dropout']:g}@r{skip['drop_at']}"
        )
    return lines


_CSV_METRICS: Final = (*METRICS, "peak_bytes")


def render_csv(records: Sequence[Mapping[str, Any]]) -> str:
    """One CSV row per record: medians, min and max flattened, ratios as columns.

    Args:
        records: the records of a run.

    Returns:
        The CSV text, header first.
    """
    columns = [
        "id", "run_id", "protocol", "clients", "dim", "dropout", "drop_at", "dropped", "party",
        "round", "repeats", "measured_dim", "scale", "status", "error",
    ]  # fmt: skip
    for metric in METRICS:
        columns += [f"{metric}_median", f"{metric}_min", f"{metric}_max"]
    columns += ["peak_bytes", "plain_id", "flower_id"]
    columns += [f"ratio_to_plain_{m}" for m in _CSV_METRICS]
    columns += [f"ratio_to_flower_{m}" for m in _CSV_METRICS]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for record in records:
        row = {c: record.get(c) for c in columns if c in record}
        for metric in METRICS:
            for stat in ("median", "min", "max"):
                row[f"{metric}_{stat}"] = (record[metric] or {}).get(stat)
        for which in ("ratio_to_plain", "ratio_to_flower"):
            for metric in _CSV_METRICS:
                row[f"{which}_{metric}"] = (record[which] or {}).get(metric)
        writer.writerow(row)
    return buffer.getvalue()
