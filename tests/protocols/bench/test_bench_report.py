"""``protocols.bench.report``: the table, the JSON schema, the CSV and the time budget."""

from __future__ import annotations

import csv
import io
import json
from typing import TYPE_CHECKING

from protocols import bench
from protocols.bench.report import TABLE_WIDTH, UNITS

if TYPE_CHECKING:
    from conftest import BenchRun, RunMain


def test_bench_exits_zero_and_prints_a_table(tiny: BenchRun) -> None:
    assert tiny.code == 0
    assert "xplain" in tiny.stdout and "secagg+" in tiny.stdout
    assert "machine:" in tiny.stdout


def test_bench_table_fits_the_terminal(tiny: BenchRun) -> None:
    lines = tiny.stdout.splitlines()
    assert max(len(line) for line in lines) <= TABLE_WIDTH == 100
    assert all(line == line.rstrip() for line in lines)


def _table(stdout: str, title: str) -> list[str]:
    """The lines of the table whose title line starts with ``title``, up to its units line."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("units:"))
    return lines[start : end + 1]


def _rows(table: list[str]) -> list[list[str]]:
    """The cells of each grid point's row: below title, header and rule, above the units."""
    return [line.split() for line in table[3:-1] if line and not line.startswith("n = ")]


def _size(value: float) -> str:
    return f"{value / 1024:.1f}KiB" if value >= 1024 else f"{value:.0f}B"


def test_bench_tables_of_time_and_bytes_each_say_their_units(tiny: BenchRun) -> None:
    """A row per grid point in both tables, under its scenario; the units under each table."""
    time, size = _table(tiny.stdout, "time:"), _table(tiny.stdout, "bytes and memory:")
    assert time[-1] == UNITS["time"] and "u = microseconds" in time[-1]
    assert size[-1] == UNITS["bytes"] and "KiB = 2^10 B" in size[-1]
    headings = [line for line in time if line.startswith("n = ")]
    assert headings == [line for line in size if line.startswith("n = ")]
    assert headings[0] == "n = 4, d = 16, 0% of clients dropping at round 2 (masked_input)"
    assert len(headings) == 4
    points = {(r["protocol"], r["threat_model"], *tiny.scenario(r)) for r in tiny.records}
    rows = _rows(size)
    assert len(rows) == len(points) == len(_rows(time))
    assert [cells[:2] for cells in rows] == [cells[:2] for cells in _rows(time)]
    by_point = {(r["protocol"], r["threat_model"], *tiny.scenario(r), r["party"], r["round"]): r
                for r in tiny.records}  # fmt: skip
    scenario = (4, 16, 0.0, 2)
    for cells in rows[: len(points) // 4]:  # the first scenario's rows
        protocol, mode = cells[0].rstrip("*"), None if cells[1] == "-" else cells[1]
        client = by_point[(protocol, mode, *scenario, "client", bench.TOTAL)]
        assert cells[2] == _size(client["bytes_sent"]["median"])
        ratio = client["ratio_to_plain"]["bytes_sent"]
        assert cells[3] == (f"{ratio:.2f}x" if ratio < 10 else f"{ratio:.1f}x")
        assert cells[4] == _size(client["bytes_received"]["median"])


def test_bench_json_and_csv_hold_what_the_table_leaves_out(tiny: BenchRun) -> None:
    """Per-round records and CPU time are in the CSV (and the JSON), not in the table."""
    rows = list(csv.DictReader(io.StringIO(tiny.csv_text)))
    rounds = {row["round"] for row in rows}
    assert {"advertise_keys", "share_keys", "masked_input", "unmasking", "consistency"} <= rounds
    for row, record in zip(rows, tiny.records, strict=True):
        assert float(row["cpu_s_median"]) == record["cpu_s"]["median"]
        assert float(row["bytes_received_max"]) == record["bytes_received"]["max"]


def test_bench_json_top_level_schema(tiny: BenchRun) -> None:
    doc = tiny.document
    assert doc["schema"] == bench.SCHEMA
    expected = {"run_id", "started", "seconds", "machine", "versions", "parameters", "flower"}
    assert expected | {"protocols", "notes", "skipped", "records"} <= set(doc)
    assert set(doc["protocols"]) == {r["protocol"] for r in doc["records"]}
    assert isinstance(doc["machine"]["cpu_count"], int) and doc["machine"]["cpu_count"] >= 1
    assert isinstance(doc["machine"]["cpu_model"], str) and doc["machine"]["cpu_model"]
    for library in ("secagg", "numpy", "cryptography", "phe", "gmpy2"):
        assert isinstance(doc["versions"][library], str)
    params = doc["parameters"]
    assert params["clients"] == [4] and params["dims"] == [16, 48]
    assert params["dropouts"] == [0.0, 0.25] and params["drop_at"] == [2]
    assert params["repeats"] == 2 and params["phe_max_dim"] == 3
    assert params["threat_models"] == ["semi-honest", "active"]
    assert set(doc["threat_models"]) == {"semi-honest", "active"}
    assert doc["skipped"] == []


def test_bench_json_records_schema(tiny: BenchRun) -> None:
    assert tiny.records
    ids = [r["id"] for r in tiny.records]
    assert ids == list(range(len(ids)))
    for record in tiny.records:
        assert record["run_id"] == tiny.document["run_id"]
        assert record["status"] == "ok", record["error"]
        assert record["party"] in bench.PARTIES and record["round"] in bench.ROUNDS
        assert record["repeats"] == 2
        assert record["scale"] >= 1 and record["measured_dim"] <= record["dim"]
        for metric in bench.METRICS:
            stats = record[metric]
            assert set(stats) == {"median", "min", "max"}
            assert stats["min"] <= stats["median"] <= stats["max"]
            assert stats["min"] >= 0
        assert record["peak_bytes"] is None or record["peak_bytes"] >= 0
        ratio = record["ratio_to_plain"]
        assert (ratio is not None) == (
            record["round"] == bench.TOTAL and record["party"] != "key_holder"
        )


def test_bench_csv_has_one_row_per_record(tiny: BenchRun) -> None:
    rows = list(csv.DictReader(io.StringIO(tiny.csv_text)))
    assert len(rows) == len(tiny.records)
    first = rows[0]
    assert {"protocol", "party", "round", "wall_s_median", "ratio_to_plain_wall_s"} <= set(first)
    assert {"threat_model", "semi_honest_id", "ratio_to_semi_honest_bytes_sent"} <= set(first)
    modes = {(row["protocol"], row["threat_model"]) for row in rows}
    assert {("secagg", "active"), ("secagg", "semi-honest"), ("plain", "")} <= modes


def test_bench_table_mentions_missing_flower(flower_missing: str, run_main: RunMain) -> None:
    code, out, _ = run_main(
        ["--protocol", "plain", "--clients", "2", "--dims", "4", "--dropouts", "0",
         "--repeats", "1", "--no-progress"]
    )  # fmt: skip
    assert code == 0 and flower_missing in out


def test_bench_json_alone_writes_to_stdout(run_main: RunMain) -> None:
    """``--json`` without a PATH is stdout, as in demo, train and recommend; so is ``--csv``."""
    plain = ["--protocol", "plain", "--clients", "2", "--dims", "4", "--dropouts", "0",
             "--repeats", "1", "--no-progress", "--no-memory"]  # fmt: skip
    code, out, _ = run_main([*plain, "--json"])
    doc = json.loads(out)
    assert code == 0 and doc["schema"] == bench.SCHEMA and doc["records"]
    code, out, _ = run_main([*plain, "--csv"])
    assert code == 0 and out.startswith("id,run_id,protocol,") and "xplain" not in out


def test_bench_time_budget_skips_points_and_says_which(run_main: RunMain) -> None:
    code, out, _ = run_main(
        ["--protocol", "plain", "secagg", "--clients", "2", "3", "--dims", "4",
         "--dropouts", "0", "--repeats", "1", "--no-progress", "--no-flower",
         "--time-budget", "1e-9", "--json", "-"]
    )  # fmt: skip
    doc = json.loads(out)
    assert code == 0 and doc["records"] == []
    modes: dict[str, list[str | None]] = {"plain": [None], "secagg": ["semi-honest", "active"]}
    assert sorted(
        (s["protocol"], str(s["threat_model"]), s["clients"], s["reason"]) for s in doc["skipped"]
    ) == sorted(
        (p, str(m), n, "time budget") for p, ms in modes.items() for m in ms for n in (2, 3)
    )
    assert any("6 points skipped" in note for note in doc["notes"])
