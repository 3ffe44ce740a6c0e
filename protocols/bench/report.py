"""The benchmark's report: run the grid, then render what it measured as a table, JSON or CSV.

Why this module exists: a number without its machine, library versions and method is not worth
citing. :func:`execute` runs the whole grid and returns a :class:`BenchResult` that carries,
next to the records, where they came from (:func:`machine_info`, :func:`library_versions`), the
parameters of the run, the notes that say how each figure was measured or scaled, and the points
a time budget (or ``--complete-max-clients``) skipped. :func:`render_table` and
:func:`render_csv` only format it; the JSON document (:meth:`BenchResult.document`, schema
:data:`SCHEMA`) holds all of it.

Rules: the terminal table fits :data:`TABLE_WIDTH` (100) columns: one table of times and one
of bytes and memory, one row per grid point (a masking protocol's row names its threat model)
under its scenario's heading, and the units (:data:`UNITS`) under them; it never prints a
figure the records do not hold, and what it leaves out (per-round figures, CPU time) is in the
JSON and the CSV, which hold every record. A scaled figure is marked ``*``; ratios are read from
the records, never recomputed here. When both threat models ran, a third table sets each
active-model masking point beside its semi-honest twin: round seconds, upload bytes per client
and their ratios.
"""

from __future__ import annotations

import csv
import datetime
import importlib.metadata
import io
import os
import platform
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
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
from protocols.simulate import ROUND_NAMES

__all__ = [
    "PROTOCOL_LABELS",
    "SCHEMA",
    "TABLE_WIDTH",
    "THREAT_MODEL_LABELS",
    "UNITS",
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
    if protocols & {*PAILLIER_PROTOCOLS, "phe"}:
        notes.append(
            "paillier-*, phe: Paillier has no masks, so no unmasking round: its records' round "
            "masked_input is encryption (clients) and addition (server), unmasking is decryption"
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


#: The widest line the terminal table prints; longer legend lines wrap.
TABLE_WIDTH: Final = 100
#: What the suffixes of the time and the bytes tables mean, printed under each.
UNITS: Final = {
    "time": "units: u = microseconds, m = milliseconds, no suffix = seconds; x = ratio",
    "bytes": "units: B = bytes, KiB = 2^10 B, MiB = 2^20 B, GiB = 2^30 B; x = ratio",
}


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
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= factor:
            return f"{value / factor:.1f}{unit}"
    return f"{value:.0f}B"


def _times(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:.0f}x"
    return f"{value:.2f}x" if value < 10 else f"{value:.1f}x"


def _wrap(text: str) -> list[str]:
    """A legend or note line, wrapped at :data:`TABLE_WIDTH` (continuations indented)."""
    return textwrap.wrap(text, TABLE_WIDTH, subsequent_indent="  ", break_on_hyphens=False)


#: A table's columns: (title, width); the first is left-aligned, the others right-aligned.
_Columns = Sequence[tuple[str, int]]
_NAME_COLUMNS: Final = (("protocol", 15), ("mode", 11))
_TIME_COLUMNS: Final = (
    *_NAME_COLUMNS,
    ("client s [min-max]", 22),
    ("server s [min-max]", 22),
    ("round s", 8),
    ("xplain", 7),
    ("xflower", 7),
)
_BYTES_COLUMNS: Final = (
    *_NAME_COLUMNS,
    ("client up", 10),
    ("xplain", 7),
    ("client down", 11),
    ("all bytes", 10),
    ("peak client", 11),
    ("peak server", 11),
)

#: The records of one grid point by (party, round).
_Group = Mapping[tuple[str, str], Mapping[str, Any]]


def _name_cells(any_record: Mapping[str, Any]) -> list[str]:
    name = any_record["protocol"] + ("*" if any_record["scale"] != 1 else "")
    return [name, any_record["threat_model"] or "-"]


def _scenario_line(any_record: Mapping[str, Any]) -> str:
    """The heading of one grid point's rows: n, d and who drops when."""
    round_index = any_record["drop_at"]
    return (
        f"n = {any_record['clients']}, d = {any_record['dim']}, {any_record['dropout']:.0%} "
        f"of clients dropping at round {round_index} ({ROUND_NAMES[round_index]})"
    )


def _failed(group: _Group) -> str | None:
    any_record = next(iter(group.values()))
    return None if any_record["status"] == "ok" else f"FAILED: {any_record['error']}"


def _median(group: _Group, party: str, metric: str, show: Callable[[float], str]) -> str:
    stats = group.get((party, TOTAL), {}).get(metric)
    return show(stats["median"]) if stats else "-"


def _time_cells(group: _Group) -> list[str]:
    client, server, whole = (group.get((p, TOTAL), {}) for p in (CLIENT, SERVER, ALL))
    ratio = whole.get("ratio_to_plain") or {}
    flower = whole.get("ratio_to_flower") or {}
    return [
        _span(client.get("wall_s")),
        _span(server.get("wall_s")),
        _median(group, ALL, "wall_s", _seconds),
        _times(ratio.get("wall_s")),
        _times(flower.get("wall_s")) if flower else "",
    ]


def _bytes_cells(group: _Group) -> list[str]:
    client, server = (group.get((p, TOTAL), {}) for p in (CLIENT, SERVER))
    client_ratio = client.get("ratio_to_plain") or {}
    return [
        _median(group, CLIENT, "bytes_sent", _size),
        _times(client_ratio.get("bytes_sent")),
        _median(group, CLIENT, "bytes_received", _size),
        _median(group, ALL, "bytes_sent", _size),
        _size(client.get("peak_bytes")),
        _size(server.get("peak_bytes")),
    ]


def _format_row(cells: Sequence[str], columns: _Columns) -> str:
    """Cells under their columns: the first left-aligned, the others right-aligned."""
    return " ".join(
        f"{c:>{w}}" if i else f"{c:<{w}}"
        for i, (c, (_, w)) in enumerate(zip(cells, columns, strict=True))
    )


def _header(columns: _Columns) -> list[str]:
    titles = [title for title, _ in columns]
    line = _format_row(titles, columns)
    return [line, "-" * len(line)]


def _groups(records: Sequence[Mapping[str, Any]]) -> dict[tuple[object, ...], dict[Any, Any]]:
    """Records by grid point (n, d, dropout, drop round, protocol, threat model)."""
    groups: dict[tuple[object, ...], dict[tuple[str, str], Mapping[str, Any]]] = {}
    for r in records:
        where = (r["clients"], r["dim"], r["dropout"], r["drop_at"], r["protocol"],
                 r["threat_model"])  # fmt: skip
        groups.setdefault(where, {})[(r["party"], r["round"])] = r
    return groups


def _point_table(
    groups: Mapping[tuple[object, ...], _Group],
    columns: _Columns,
    cells: Callable[[_Group], list[str]],
) -> list[str]:
    """One row per grid point under ``columns``, the points of one scenario under its heading."""
    lines = _header(columns)
    previous: tuple[object, ...] | None = None
    for point, group in groups.items():
        any_record = next(iter(group.values()))
        if point[:4] != previous:
            lines += ([""] if previous is not None else []) + [_scenario_line(any_record)]
            previous = point[:4]
        failed = _failed(group)
        names = _format_row(_name_cells(any_record), columns[:2])
        if failed is None:
            row = _format_row([*_name_cells(any_record), *cells(group)], columns)
            lines.append(row.rstrip())
        else:
            lines += textwrap.wrap(
                f"{names} {failed}", TABLE_WIDTH, subsequent_indent=" " * (len(names) + 1)
            )
    return lines


def render_table(result: BenchResult) -> str:
    """The terminal table, at most :data:`TABLE_WIDTH` columns wide.

    Two tables of one row per grid point, the points of a scenario under its heading: time
    (client, server and round seconds, ratios to plain and Flower), then bytes and peak memory;
    the units under each; the threat-model comparison; the legend and the notes. Every figure of the
    records, the per-round ones included, is in ``--json`` and ``--csv``.

    Args:
        result: the finished benchmark.

    Returns:
        The table's text, without a final newline.
    """
    groups = _groups(result.records)
    repeats = result.config.repeats
    lines = [
        f"time: seconds per protocol round, median [min-max] over {repeats} runs",
        *_point_table(groups, _TIME_COLUMNS, _time_cells),
        UNITS["time"],
        "",
        "bytes and memory: bytes per protocol round (median), peak memory (tracemalloc)",
        *_point_table(groups, _BYTES_COLUMNS, _bytes_cells),
        UNITS["bytes"],
        "",
        *_threat_model_table(groups),
        *_footer(result),
    ]
    return "\n".join(lines)


_MODE_COLUMNS: Final = (
    ("protocol", 8),
    ("n", 5),
    ("d", 7),
    ("drop", 6),
    ("semi k/t", 8),
    ("act k/t", 7),
    ("semi s", 8),
    ("active s", 8),
    ("xsemi", 6),
    ("semi up B", 9),
    ("act up B", 9),
    ("xsemi", 6),
)


def _degree_threshold(record: Mapping[str, Any]) -> str:
    setup = record["setup"]
    return f"{setup.get('degree', '?')}/{setup.get('threshold', '?')}"


def _mode_cells(semi: _Group, active: _Group) -> list[str]:
    """One comparison row: the semi-honest and active figures of one point, and their ratios."""
    any_active = next(iter(active.values()))
    drop = f"{any_active['dropout']:.0%}@r{any_active['drop_at']}"
    cells = [any_active["protocol"], str(any_active["clients"]), str(any_active["dim"]), drop]
    whole, client = active.get((ALL, TOTAL), {}), active.get((CLIENT, TOTAL), {})
    whole_ratio = whole.get("ratio_to_semi_honest") or {}
    client_ratio = client.get("ratio_to_semi_honest") or {}

    def ratio(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}x"

    return [
        *cells,
        _degree_threshold(next(iter(semi.values()))),
        _degree_threshold(any_active),
        _median(semi, ALL, "wall_s", lambda v: f"{v:.4f}"),
        _median(active, ALL, "wall_s", lambda v: f"{v:.4f}"),
        ratio(whole_ratio.get("wall_s")),
        _median(semi, CLIENT, "bytes_sent", lambda v: f"{v:.0f}"),
        _median(active, CLIENT, "bytes_sent", lambda v: f"{v:.0f}"),
        ratio(client_ratio.get("bytes_sent")),
    ]


def _threat_model_table(groups: Mapping[tuple[object, ...], _Group]) -> list[str]:
    """Each active-model masking point beside its semi-honest twin (nothing if none ran)."""
    rows = []
    for point, active in groups.items():
        if point[5] in (None, SEMI_HONEST):
            continue
        semi = groups.get((*point[:5], SEMI_HONEST))
        if semi is None:
            continue
        failed = _failed(semi) or _failed(active)
        if failed is None:
            rows.append(_format_row(_mode_cells(semi, active), _MODE_COLUMNS))
        else:
            rows += _wrap(f"{point[4]} n = {point[0]}, d = {point[1]}: {failed}")
    if not rows:
        return []
    legend = (
        "k/t: degree and threshold (semi-honest, active); semi s, active s: round seconds "
        "(every party's summed, median); up B: bytes a client sends (mean per finishing client, "
        "median); xsemi: active over semi-honest; the consistency round (3, active only) is in "
        "--json and --csv (round 'consistency')"
    )
    return [
        "active against semi-honest (same run, inputs and dropouts):",
        *_header(_MODE_COLUMNS),
        *rows,
        *_wrap(legend),
        "",
    ]


def _footer(result: BenchResult) -> list[str]:
    m = result.machine
    legend = (
        "mode: the threat model of a masking run (- where the protocol has one whatever the "
        "threat); client s, server s: per-client and server seconds per round; round s: every "
        "party's seconds summed; xplain: ratio to the plain sum of the same run; xflower: round "
        "time over Flower's; client up, client down: bytes a client sends, receives (mean per "
        "finishing client); all bytes: every byte sent, counted once; peak: tracemalloc; "
        "* measured on a smaller d and scaled (see notes); paillier-fresh, paillier-djn: "
        "--protocol paillier with --randomness fresh, djn"
    )
    lines = [
        *_wrap(legend),
        *_wrap(
            f"machine: {m['cpu_count']} x {m['cpu_model']}, Python {m['python']}; "
            f"run {result.run_id}"
        ),
        *_wrap(result.flower["reason"]),
        *_wrap(
            "protocols: "
            + "; ".join(f"{p} = {PROTOCOL_LABELS[p]}" for p in result.protocol_names())
        ),
    ]
    if result.config.threat_models:
        lines += _wrap(
            "threat models: "
            + "; ".join(f"{t} = {THREAT_MODEL_LABELS[t]}" for t in result.config.threat_models)
        )
    for note in result.notes:
        lines += _wrap(f"note: {note}")
    for skip in result.skipped:
        mode = "" if skip["threat_model"] is None else f"/{skip['threat_model']}"
        lines += _wrap(
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
