"""``protocols.bench.statistics``: every ratio divides by a record of the same run, named by id."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from protocols import bench

if TYPE_CHECKING:
    from conftest import BenchRun

FLOWER_INSTALLED = bench.flower_status()[0]


def test_bench_ratios_recomputed_from_same_run_records(tiny: BenchRun) -> None:
    records = tiny.by_id()
    checked = 0
    for record in tiny.records:
        if record["ratio_to_plain"] is None:
            continue
        plain = records[record["plain_id"]]
        assert plain["protocol"] == bench.PLAIN
        assert plain["run_id"] == record["run_id"] == tiny.document["run_id"]
        assert tiny.scenario(plain) == tiny.scenario(record)
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


@pytest.mark.skipif(not FLOWER_INSTALLED, reason="flwr is not installed")
def test_bench_ratio_to_flower_is_measured_in_the_same_run(tiny: BenchRun) -> None:
    records = tiny.by_id()
    linked = [r for r in tiny.records if r["protocol"] == "secagg+" and r["flower_id"] is not None]
    assert linked
    for record in linked:
        flower = records[record["flower_id"]]
        assert flower["protocol"] == bench.FLOWER and flower["run_id"] == record["run_id"]
        assert tiny.scenario(flower) == tiny.scenario(record)
        expected = record["wall_s"]["median"] / flower["wall_s"]["median"]
        assert record["ratio_to_flower"]["wall_s"] == pytest.approx(expected, rel=1e-12)
    assert "xflower" in tiny.stdout
