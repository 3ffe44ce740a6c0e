"""``protocols.bench.runners`` and the grid: every protocol on every cell, correctly scaled."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from protocols import bench
from protocols.graph import complete_threshold, secagg_plus_parameters, secagg_threshold

if TYPE_CHECKING:
    from conftest import BenchRun


def test_bench_covers_every_protocol_and_scenario(tiny: BenchRun) -> None:
    protocols = {r["protocol"] for r in tiny.records}
    expected = set(bench.PROTOCOLS) | ({bench.FLOWER} if bench.flower_status()[0] else set())
    assert protocols == expected
    modes = {(r["protocol"], r["threat_model"]) for r in tiny.records}
    for protocol in protocols:
        masking = protocol in ("secagg", "secagg+")
        expected_modes = {"semi-honest", "active"} if masking else {None}
        assert {m for p, m in modes if p == protocol} == expected_modes, protocol
    scenarios = {tiny.scenario(r) for r in tiny.records}
    assert scenarios == {(4, d, p, 2) for d in (16, 48) for p in (0.0, 0.25)}


def test_bench_secure_protocols_cost_more_than_plain(tiny: BenchRun) -> None:
    for record in tiny.records:
        if record["party"] == "all" and record["protocol"] != bench.PLAIN:
            assert record["ratio_to_plain"]["cpu_s"] > 1, record["protocol"]


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


def test_bench_rounds_use_the_planned_degree_and_threshold(tiny: BenchRun) -> None:
    for record in tiny.records:
        setup, n, mode = record["setup"], record["clients"], record["threat_model"]
        if record["protocol"] in ("secagg", "secagg+"):
            assert setup["threat_model"] == mode
        if record["protocol"] == "secagg":
            threshold = complete_threshold(n, 0.05, mode)
            assert (setup["degree"], setup["threshold"]) == (n - 1, threshold)
        elif record["protocol"] == "secagg+":
            chosen = secagg_plus_parameters(
                n,
                dropout_fraction=max(0.05, record["dropout"]),
                corrupt_fraction=0.05,
                threat_model=mode,
            )
            assert (setup["degree"], setup["threshold"]) == (chosen.degree, chosen.threshold)
        elif record["protocol"].startswith("paillier"):
            assert setup["threshold"] == secagg_threshold(n)
        elif record["protocol"] == bench.FLOWER:
            assert setup["threshold"] == secagg_threshold(n) and setup["num_shares"] == n
