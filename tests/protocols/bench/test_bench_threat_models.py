"""Active against semi-honest in one ``secagg bench`` run: the mode per row, the ratios, the cap.

SecAgg and SecAgg+ run once per threat model on the same inputs and dropouts; each active total
record names its semi-honest twin (``semi_honest_id``) and divides by it; the table sets the
two side by side with exactly the figures the README cites.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from protocols import bench

if TYPE_CHECKING:
    from conftest import BenchRun, RunMain

MASKING = ("secagg", "secagg+")
SMALL = ["--dims", "4", "--dropouts", "0", "--repeats", "1", "--no-progress", "--no-flower",
         "--no-memory", "--json", "-"]  # fmt: skip


def _comparison_rows(stdout: str) -> list[list[str]]:
    """The cells of the rows of the 'active against semi-honest' table."""
    lines = stdout.splitlines()
    start = lines.index("active against semi-honest (same run, inputs and dropouts):")
    rows = []
    for line in lines[start + 3 :]:
        if not line.strip() or line.startswith("k/t:"):
            break
        rows.append(line.split())
    return rows


def test_bench_active_records_divide_by_their_semi_honest_twin(tiny: BenchRun) -> None:
    records = tiny.by_id()
    linked = 0
    for record in tiny.records:
        if record["threat_model"] != "active" or record["round"] != bench.TOTAL:
            assert record["semi_honest_id"] is None and record["ratio_to_semi_honest"] is None
            continue
        semi = records[record["semi_honest_id"]]
        assert (semi["protocol"], semi["threat_model"]) == (record["protocol"], "semi-honest")
        assert tiny.scenario(semi) == tiny.scenario(record)
        assert (semi["party"], semi["round"], semi["run_id"]) == (
            record["party"],
            record["round"],
            record["run_id"],
        )
        for metric in ("wall_s", "bytes_sent"):
            expected = record[metric]["median"] / semi[metric]["median"]
            assert record["ratio_to_semi_honest"][metric] == pytest.approx(expected, rel=1e-12)
        linked += 1
    # client, server and all, for 2 masking protocols on 4 scenarios.
    assert linked == 3 * 2 * 4


def test_bench_active_clients_upload_signatures_and_sign_the_survivors(tiny: BenchRun) -> None:
    """The active mode's extra bytes (signed adverts, round 3) show up, per client."""
    for record in tiny.records:
        if record["threat_model"] != "active" or record["party"] != "client":
            continue
        if record["round"] == bench.TOTAL:
            assert record["ratio_to_semi_honest"]["bytes_sent"] > 1
        if record["round"] == "consistency":
            assert record["bytes_sent"]["median"] > 64  # the signature and its framing


def test_bench_table_sets_active_beside_semi_honest(tiny: BenchRun) -> None:
    rows = _comparison_rows(tiny.stdout)
    groups: dict[tuple[object, ...], dict[tuple[str, str], dict[str, Any]]] = {}
    for r in tiny.records:
        if r["protocol"] in MASKING:
            where = (r["protocol"], r["clients"], r["dim"], f"{r['dropout']:.0%}@r{r['drop_at']}")
            groups.setdefault((*where, r["threat_model"]), {})[(r["party"], r["round"])] = r
    assert len(rows) == 2 * 4
    for cells in rows:
        protocol, n, d, drop = cells[:4]
        semi = groups[(protocol, int(n), int(d), drop, "semi-honest")]
        active = groups[(protocol, int(n), int(d), drop, "active")]
        whole, client = active[("all", bench.TOTAL)], active[("client", bench.TOTAL)]
        assert cells[6] == f"{semi[('all', bench.TOTAL)]['wall_s']['median']:.4f}"
        assert cells[7] == f"{whole['wall_s']['median']:.4f}"
        assert cells[8] == f"{whole['ratio_to_semi_honest']['wall_s']:.3f}x"
        assert cells[9] == f"{semi[('client', bench.TOTAL)]['bytes_sent']['median']:.0f}"
        assert cells[10] == f"{client['bytes_sent']['median']:.0f}"
        assert cells[11] == f"{client['ratio_to_semi_honest']['bytes_sent']:.3f}x"
        assert len(cells) == 12  # the consistency round's cost is in --json and --csv
    assert "semi-honest" in tiny.stdout and "active" in tiny.stdout


def test_bench_one_threat_model_prints_no_comparison(run_main: RunMain) -> None:
    code, out, _ = run_main(
        ["--protocol", "secagg+", "--clients", "3", "--threat-models", "active", *SMALL[:-2]]
    )
    assert code == 0 and "active against semi-honest" not in out
    assert " active " in out and "semi-honest " not in out.split("threat models:")[0]


def test_bench_complete_max_clients_leaves_out_secagg_above_it(run_main: RunMain) -> None:
    code, out, _ = run_main(
        ["--protocol", "secagg", "secagg+", "--clients", "3", "4",
         "--complete-max-clients", "3", *SMALL]
    )  # fmt: skip
    doc = json.loads(out)
    assert code == 0
    ran = {(r["protocol"], r["threat_model"], r["clients"]) for r in doc["records"]}
    modes = ("semi-honest", "active")
    assert {(p, m, n) for p, m, n in ran if p in MASKING} == {
        *(("secagg", m, 3) for m in modes),
        *(("secagg+", m, n) for m in modes for n in (3, 4)),
    }
    reason = "n above --complete-max-clients 3"
    assert sorted((s["threat_model"], s["clients"], s["reason"]) for s in doc["skipped"]) == [
        ("active", 4, reason),
        ("semi-honest", 4, reason),
    ]
    assert doc["parameters"]["complete_max_clients"] == 3


def test_bench_drops_in_the_consistency_and_unmasking_rounds(run_main: RunMain) -> None:
    """Clients lost at round 3 or 4 have uploaded: every protocol counts them, exactly."""
    code, out, _ = run_main(
        ["--protocol", "plain", "secagg", "secagg+", "--clients", "5", "--dims", "4",
         "--dropouts", "0.2", "--drop-at", "2", "3", "4", "--repeats", "1", "--no-progress",
         "--no-flower", "--no-memory", "--json", "-"]
    )  # fmt: skip
    doc = json.loads(out)
    assert code == 0
    assert all(r["status"] == "ok" for r in doc["records"]), doc["records"]
    received = {
        r["drop_at"]: r["bytes_received"]["median"]
        for r in doc["records"]
        if (r["protocol"], r["party"], r["round"]) == ("plain", "server", bench.TOTAL)
    }
    assert received[3] == received[4] > received[2]
    assert {r["drop_at"] for r in doc["records"] if r["round"] == "consistency"} == {2, 3, 4}
