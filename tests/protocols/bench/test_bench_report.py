"""``protocols.bench.report``: the table, the JSON schema, the CSV and the time budget."""

from __future__ import annotations

import csv
import io
import json
from typing import TYPE_CHECKING

from protocols import bench

if TYPE_CHECKING:
    from conftest import BenchRun, RunMain


def test_bench_exits_zero_and_prints_a_table(tiny: BenchRun) -> None:
    assert tiny.code == 0
    assert "xplain" in tiny.stdout and "secagg+" in tiny.stdout
    assert "machine:" in tiny.stdout


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
        ["--protocols", "plain", "--clients", "2", "--dims", "4", "--dropouts", "0",
         "--repeats", "1", "--no-progress"]
    )  # fmt: skip
    assert code == 0 and flower_missing in out


def test_bench_time_budget_skips_points_and_says_which(run_main: RunMain) -> None:
    code, out, _ = run_main(
        ["--protocols", "plain", "secagg", "--clients", "2", "3", "--dims", "4",
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
