"""``protocols.bench.metering``: costs per party and round, bytes that add up."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from protocols import bench

if TYPE_CHECKING:
    from conftest import BenchRun


def test_bench_measures_per_party_and_round(tiny: BenchRun) -> None:
    secagg = [r for r in tiny.records if r["protocol"] == "secagg" and r["dim"] == 16]
    active = {(r["party"], r["round"]) for r in secagg if r["threat_model"] == "active"}
    semi = {(r["party"], r["round"]) for r in secagg if r["threat_model"] == "semi-honest"}
    for party in ("client", "server"):
        for name in bench.ROUNDS:
            assert (party, name) in active
            # A semi-honest round has no consistency round (clients here drop at round 2).
            assert ((party, name) in semi) == (name != "consistency")
    paillier = {(r["party"], r["round"]) for r in tiny.records if r["protocol"] == "paillier-djn"}
    assert ("key_holder", "unmasking") in paillier
    for record in secagg:
        if record["party"] == "client" and record["round"] == bench.TOTAL:
            assert record["cpu_s"]["median"] > 0
            assert record["peak_bytes"] is not None and record["peak_bytes"] > 0


def test_bench_round_bytes_add_up_to_totals(tiny: BenchRun) -> None:
    groups: dict[tuple[object, ...], dict[str, dict[str, Any]]] = {}
    for r in tiny.records:
        if r["party"] == "server" and r["protocol"] != bench.FLOWER:
            where = (r["protocol"], r["threat_model"], *tiny.scenario(r))
            assert r["round"] not in groups.get(where, {})
            groups.setdefault(where, {})[r["round"]] = r
    assert groups
    for rounds in groups.values():
        for metric in ("bytes_sent", "bytes_received"):
            parts = sum(r[metric]["median"] for name, r in rounds.items() if name != bench.TOTAL)
            assert parts == pytest.approx(rounds[bench.TOTAL][metric]["median"])
