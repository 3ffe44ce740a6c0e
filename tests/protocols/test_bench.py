"""``secagg bench`` on a tiny grid: JSON schema, same-run ratios, outputs and argument errors.

One module-scoped run (small Paillier keys through the ``_generate_keypair`` seam) feeds most
tests, so the whole file stays within a few seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib.util
import io
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from protocols import bench
from secagg.errors import ParameterError
from secagg.hazmat import paillier as hazmat_paillier

FLOWER_INSTALLED = bench.flower_status()[0]
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
SCENARIO_KEYS = ("clients", "dim", "dropout", "drop_at")
TINY_GRID = (
    "--protocols", "plain", "secagg", "secagg+", "paillier-fresh", "paillier-djn", "phe",
    "flower", "--clients", "4", "--dims", "16", "48", "--dropouts", "0", "0.25",
    "--drop-at", "2", "--repeats", "2", "--paillier-max-dim", "24", "--phe-max-dim", "3",
    "--no-progress",
)  # fmt: skip


@dataclass(frozen=True)
class BenchRun:
    """What one tiny benchmark produced."""

    code: int
    stdout: str
    document: dict[str, Any]
    csv_text: str
    plot_dir: Path

    @property
    def records(self) -> list[dict[str, Any]]:
        return list(self.document["records"])

    def by_id(self) -> dict[int, dict[str, Any]]:
        return {r["id"]: r for r in self.records}


def _small_keys(bits: int) -> hazmat_paillier.PaillierKeypair:
    return hazmat_paillier._generate_keypair_unchecked_size(512, djn=True)


def _run(argv: Sequence[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = bench.main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BenchRun]:
    directory = tmp_path_factory.mktemp("bench")
    json_path, csv_path, plots = directory / "b.json", directory / "b.csv", directory / "plots"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bench, "_generate_keypair", _small_keys)
        plot_args = ["--plot-dir", str(plots)] if HAS_MATPLOTLIB else []
        code, stdout, _ = _run(
            [*TINY_GRID, "--json", str(json_path), "--csv", str(csv_path), *plot_args]
        )
    yield BenchRun(
        code,
        stdout,
        json.loads(json_path.read_text(encoding="utf-8")),
        csv_path.read_text(encoding="utf-8"),
        plots,
    )


def _scenario(record: Mapping[str, Any]) -> tuple[object, ...]:
    return tuple(record[k] for k in SCENARIO_KEYS)


# -- schema ------------------------------------------------------------------------------------


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


def test_bench_covers_every_protocol_and_scenario(tiny: BenchRun) -> None:
    protocols = {r["protocol"] for r in tiny.records}
    expected = set(bench.PROTOCOLS) | ({bench.FLOWER} if FLOWER_INSTALLED else set())
    assert protocols == expected
    scenarios = {_scenario(r) for r in tiny.records}
    assert scenarios == {(4, d, p, 2) for d in (16, 48) for p in (0.0, 0.25)}


def test_bench_measures_per_party_and_round(tiny: BenchRun) -> None:
    secagg = [r for r in tiny.records if r["protocol"] == "secagg" and r["dim"] == 16]
    keys = {(r["party"], r["round"]) for r in secagg}
    for party in ("client", "server"):
        for name in bench.ROUNDS:
            assert (party, name) in keys
    paillier = {(r["party"], r["round"]) for r in tiny.records if r["protocol"] == "paillier-djn"}
    assert ("key_holder", "unmasking") in paillier
    for record in secagg:
        if record["party"] == "client" and record["round"] == bench.TOTAL:
            assert record["cpu_s"]["median"] > 0
            assert record["peak_bytes"] is not None and record["peak_bytes"] > 0


# -- ratios come from the same run ---------------------------------------------------------------


def test_bench_ratios_recomputed_from_same_run_records(tiny: BenchRun) -> None:
    records = tiny.by_id()
    checked = 0
    for record in tiny.records:
        if record["ratio_to_plain"] is None:
            continue
        plain = records[record["plain_id"]]
        assert plain["protocol"] == bench.PLAIN
        assert plain["run_id"] == record["run_id"] == tiny.document["run_id"]
        assert _scenario(plain) == _scenario(record)
        assert (plain["party"], plain["round"]) == (record["party"], record["round"])
        for metric in bench.METRICS:
            denominator = plain[metric]["median"]
            ratio = record["ratio_to_plain"][metric]
            if denominator == 0:
                assert ratio is None
            else:
                assert ratio == pytest.approx(record[metric]["median"] / denominator, rel=1e-12)
        checked += 1
    assert checked >= 4 * len(bench.PROTOCOLS)


def test_bench_plain_ratio_is_one(tiny: BenchRun) -> None:
    for record in tiny.records:
        if record["protocol"] == bench.PLAIN and record["ratio_to_plain"] is not None:
            assert record["ratio_to_plain"]["wall_s"] == 1.0


def test_bench_secure_protocols_cost_more_than_plain(tiny: BenchRun) -> None:
    for record in tiny.records:
        if record["party"] == "all" and record["protocol"] != bench.PLAIN:
            assert record["ratio_to_plain"]["cpu_s"] > 1, record["protocol"]


@pytest.mark.skipif(not FLOWER_INSTALLED, reason="flwr is not installed")
def test_bench_ratio_to_flower_is_measured_in_the_same_run(tiny: BenchRun) -> None:
    records = tiny.by_id()
    linked = [r for r in tiny.records if r["protocol"] == "secagg+" and r["flower_id"] is not None]
    assert linked
    for record in linked:
        flower = records[record["flower_id"]]
        assert flower["protocol"] == bench.FLOWER and flower["run_id"] == record["run_id"]
        assert _scenario(flower) == _scenario(record)
        expected = record["wall_s"]["median"] / flower["wall_s"]["median"]
        assert record["ratio_to_flower"]["wall_s"] == pytest.approx(expected, rel=1e-12)
    assert "xflower" in tiny.stdout


# -- bytes, scaling, outputs -------------------------------------------------------------------


def test_bench_round_bytes_add_up_to_totals(tiny: BenchRun) -> None:
    groups: dict[tuple[object, ...], dict[str, dict[str, Any]]] = {}
    for r in tiny.records:
        if r["party"] == "server" and r["protocol"] != bench.FLOWER:
            groups.setdefault((r["protocol"], *_scenario(r)), {})[r["round"]] = r
    assert groups
    for rounds in groups.values():
        for metric in ("bytes_sent", "bytes_received"):
            parts = sum(r[metric]["median"] for name, r in rounds.items() if name != bench.TOTAL)
            assert parts == pytest.approx(rounds[bench.TOTAL][metric]["median"])


def test_bench_slow_paths_are_scaled_and_say_so(tiny: BenchRun) -> None:
    for record in tiny.records:
        dim, measured = record["dim"], record["measured_dim"]
        if record["protocol"] == "phe":
            assert measured == 3 and record["scale"] == dim / 3
        elif record["protocol"].startswith("paillier"):
            # Whole ciphertexts are measured; the scale is the ratio of ciphertext counts.
            slots = record["setup"]["values_per_ciphertext"]
            assert measured == dim or measured % slots == 0
            assert record["scale"] == math.ceil(dim / slots) / math.ceil(measured / slots)
        else:
            assert record["scale"] == 1 and measured == dim
    notes = " ".join(tiny.document["notes"])
    assert "phe: measured on a subsample" in notes and "scaled" in notes
    assert "phe*" in tiny.stdout


def test_bench_csv_has_one_row_per_record(tiny: BenchRun) -> None:
    rows = list(csv.DictReader(io.StringIO(tiny.csv_text)))
    assert len(rows) == len(tiny.records)
    first = rows[0]
    assert {"protocol", "party", "round", "wall_s_median", "ratio_to_plain_wall_s"} <= set(first)


@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="matplotlib is not installed")
def test_bench_writes_four_png_plots(tiny: BenchRun) -> None:
    names = {p.name for p in tiny.plot_dir.glob("*.png")}
    assert names == {"time_vs_d.png", "time_vs_n.png", "bytes_vs_d.png", "dropout_recovery.png"}
    for path in tiny.plot_dir.glob("*.png"):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- Flower absent, time budget ------------------------------------------------------------------


def test_bench_without_flower_says_why_and_has_no_column(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "flower_status", lambda: (False, bench.FLOWER_MISSING))
    code, out, _ = _run(
        ["--protocols", "plain", "secagg+", "flower", "--clients", "3", "--dims", "8",
         "--dropouts", "0", "--repeats", "1", "--no-memory", "--no-progress", "--json", "-"]
    )  # fmt: skip
    assert code == 0
    doc = json.loads(out)
    assert doc["flower"] == {"available": False, "reason": bench.FLOWER_MISSING}
    assert "pip install secagg[flower]" in bench.FLOWER_MISSING
    assert all(
        r["protocol"] != bench.FLOWER and r["ratio_to_flower"] is None for r in doc["records"]
    )


def test_bench_table_mentions_missing_flower(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "flower_status", lambda: (False, bench.FLOWER_MISSING))
    code, out, _ = _run(
        ["--protocols", "plain", "--clients", "2", "--dims", "4", "--dropouts", "0",
         "--repeats", "1", "--no-progress"]
    )  # fmt: skip
    assert code == 0 and bench.FLOWER_MISSING in out


def test_bench_time_budget_skips_points_and_says_which() -> None:
    code, out, _ = _run(
        ["--protocols", "plain", "secagg", "--clients", "2", "3", "--dims", "4",
         "--dropouts", "0", "--repeats", "1", "--no-progress", "--no-flower",
         "--time-budget", "1e-9", "--json", "-"]
    )  # fmt: skip
    doc = json.loads(out)
    assert code == 0 and doc["records"] == []
    assert {(s["protocol"], s["clients"]) for s in doc["skipped"]} == {
        (p, n) for p in ("plain", "secagg") for n in (2, 3)
    }
    assert any("4 points skipped" in note for note in doc["notes"])


# -- bad arguments -----------------------------------------------------------------------------

BAD_ARGUMENTS = [
    (["--protocols", "rot13"], "unknown protocol 'rot13'"),
    (["--dims", "0"], "d must be a positive integer, got 0"),
    (["--dims", "-5"], "d must be a positive integer"),
    (["--dims", "ten"], "'ten' is not an integer"),
    (["--dropouts", "1"], "must be in [0, 1), got 1.0"),
    (["--dropouts", "-0.1"], "must be in [0, 1)"),
    (["--clients", "1"], "needs n >= 2, got 1"),
    (["--clients", "4", "--threshold", "5"], "n=4 is below the threshold t=5"),
    (["--clients", "4", "--dropouts", "0.5"], "leaves 2 clients, below the threshold t=3"),
    (["--drop-at", "4"], "rounds are 0 (AdvertiseKeys) to 3 (Unmasking)"),
    (["--repeats", "0"], "repeats must be a positive integer"),
    (["--key-bits", "1024"], "--key-bits: use one of [2048, 3072]"),
    (["--time-budget", "0"], "--time-budget must be positive"),
]


def _namespace(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench.add_bench_arguments(parser)
    return parser.parse_args([*argv, "--no-progress"])


@pytest.mark.parametrize(("argv", "message"), BAD_ARGUMENTS)
def test_bench_bad_argument_raises_parameter_error(argv: list[str], message: str) -> None:
    with pytest.raises(ParameterError) as raised:
        bench.run_bench(_namespace(argv))
    assert message in str(raised.value)


@pytest.mark.parametrize(("argv", "message"), BAD_ARGUMENTS[:3])
def test_bench_main_reports_bad_argument_with_exit_code_2(argv: list[str], message: str) -> None:
    code, out, err = _run(argv)
    assert code == 2 and out == ""
    assert err.startswith("secagg bench: error: ") and message in err


def test_bench_unknown_preset_is_refused() -> None:
    with pytest.raises(ParameterError, match="unknown preset"):
        bench.config_from_args(argparse.Namespace(preset="huge"))


def test_bench_presets_match_the_issue() -> None:
    paper = bench.config_from_args(_namespace(["--preset", "paper"]))
    assert paper.clients == (100, 300, 500) and paper.dims == (100_000,)
    assert paper.dropouts == (0.0, 0.1, 0.3)
    quick = bench.config_from_args(_namespace(["--preset", "quick"]))
    assert set(quick.protocols) == set(bench.PROTOCOLS)
    assert max(quick.clients) * max(quick.dims) <= 200_000  # what keeps it under a minute


def test_bench_comma_lists_and_scientific_notation() -> None:
    config = bench.config_from_args(_namespace(["--clients", "10,20", "--dims", "1e3", "1e2"]))
    assert config.clients == (10, 20) and config.dims == (100, 1000)


def test_bench_plot_dir_without_matplotlib_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "matplotlib" else real(name, *a),
    )
    with pytest.raises(ParameterError, match=r"pip install secagg\[plot\]"):
        bench.config_from_args(_namespace(["--plot-dir", "somewhere"]))


@pytest.mark.skipif(not FLOWER_INSTALLED, reason="flwr is not installed")
def test_bench_reports_flower_halting_on_early_dropout_without_failing() -> None:
    code, out, _ = _run(
        ["--protocols", "plain", "secagg+", "flower", "--clients", "4", "--dims", "8",
         "--dropouts", "0.25", "--drop-at", "1", "--repeats", "1", "--no-memory",
         "--no-progress", "--json", "-"]
    )  # fmt: skip
    doc = json.loads(out)
    assert code == 0  # Only this project's protocols decide the exit code.
    status = {r["protocol"]: (r["status"], r["error"]) for r in doc["records"]}
    assert status["secagg+"] == ("ok", None)
    assert status[bench.FLOWER][0] == "failed"
    assert "Flower's server halted" in status[bench.FLOWER][1]
