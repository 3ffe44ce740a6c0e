"""Tests of the aggregation backends: the plaintext baseline and SecAgg / SecAgg+ by masking."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pytest

from protocols.aggregators import (
    AggregationResult,
    Aggregator,
    MaskingAggregator,
    PlainAggregator,
)
from protocols.graph import complete_graph
from protocols.simulate import ROUND_NAMES
from secagg.errors import InsufficientSurvivorsError, ParameterError

LENGTH = 16


def _updates(n: int, seed: int, scale: float = 1.0, length: int = LENGTH) -> dict[int, Any]:
    rng = np.random.default_rng(seed)
    return {u: rng.uniform(-scale, scale, size=length) for u in range(n)}


def _step(clip: float, value_bits: int) -> float:
    return 2 * clip / (2**value_bits - 1)


# --------------------------------------------------------------------------------------------
# PlainAggregator
# --------------------------------------------------------------------------------------------


def test_plain_aggregator_sums_survivors() -> None:
    updates = {u: np.full(3, float(u + 1)) for u in range(6)}
    result = PlainAggregator(clip=10.0).aggregate(updates, dropouts={0: 0, 1: 1, 2: 2, 3: 3})
    # Round 0-2 dropouts never uploaded; a round-3 dropout already had its input counted.
    assert result.survivors == (3, 4, 5)
    assert result.dropped == (0, 1, 2)
    np.testing.assert_array_equal(result.total, np.full(3, 4.0 + 5.0 + 6.0))
    assert result.total.dtype == np.float64
    assert result.total_weight is None
    np.testing.assert_allclose(result.mean, np.full(3, 5.0))


def test_plain_aggregator_without_dropouts_sums_everyone() -> None:
    updates = _updates(5, seed=1)
    result = PlainAggregator().aggregate(updates)
    assert result.survivors == (0, 1, 2, 3, 4)
    assert result.dropped == ()
    np.testing.assert_allclose(result.total, sum(updates.values()))


def test_plain_aggregator_weights_and_weighted_mean() -> None:
    updates = {0: [1.0, 2.0], 1: [3.0, -1.0], 2: [10.0, 10.0]}
    weights = {0: 2.0, 1: 0.5, 2: 4.0}
    result = PlainAggregator(clip=10.0, max_weight=4.0).aggregate(
        updates, weights=weights, dropouts={2: 1}
    )
    np.testing.assert_allclose(result.total, [2.0 + 1.5, 4.0 - 0.5])
    assert result.total_weight == pytest.approx(2.5)
    np.testing.assert_allclose(result.mean, [3.5 / 2.5, 3.5 / 2.5])


def test_plain_aggregator_accepts_lists_and_ints() -> None:
    result = PlainAggregator(clip=10.0).aggregate({0: [1, 2], 1: (3, 4)})
    np.testing.assert_array_equal(result.total, [4.0, 6.0])


def test_aggregation_result_mean_without_survivors_raises() -> None:
    result = PlainAggregator().aggregate({0: [1.0], 1: [2.0]}, dropouts={0: 0, 1: 2})
    assert result.survivors == ()
    with pytest.raises(InsufficientSurvivorsError):
        _ = result.mean
    weighted = AggregationResult(np.zeros(1), (0,), (), total_weight=0.0)
    with pytest.raises(InsufficientSurvivorsError):
        _ = weighted.mean


# --------------------------------------------------------------------------------------------
# MaskingAggregator: correctness against the plaintext sum
# --------------------------------------------------------------------------------------------

GRAPH_CASES = [("complete", 12), ("harary", 30)]


@pytest.mark.parametrize(("graph", "n"), GRAPH_CASES)
@pytest.mark.parametrize(("seed", "clip", "value_bits"), [(0, 1.0, 16), (1, 0.5, 8), (2, 3.0, 24)])
def test_masking_aggregator_matches_plain_sum_with_dropouts_every_round(
    graph: str, n: int, seed: int, clip: float, value_bits: int
) -> None:
    rng = np.random.default_rng(seed)
    updates = _updates(n, seed, scale=clip)
    chosen = rng.choice(n, size=4, replace=False)
    dropouts = {int(u): r for r, u in enumerate(chosen)}
    aggregator = MaskingAggregator(graph, clip=clip, value_bits=value_bits)
    result = aggregator.aggregate(updates, dropouts=dropouts)
    plain = PlainAggregator(clip=clip).aggregate(updates, dropouts=dropouts)
    assert result.survivors == plain.survivors
    assert result.dropped == plain.dropped
    assert set(result.dropped) == {int(u) for u in chosen[:3]}
    assert result.total.dtype == np.float64
    assert result.total.shape == (LENGTH,)
    assert np.max(np.abs(result.total - plain.total)) <= n * _step(clip, value_bits)
    assert result.total_weight is None


def test_masking_aggregator_harary_uses_a_sparse_graph() -> None:
    aggregator = MaskingAggregator("harary")
    graph, threshold = aggregator.build_graph(list(range(30)))
    assert not graph.is_complete()
    assert graph.max_degree == 24
    assert 2 <= threshold <= graph.max_degree + 1
    assert aggregator.name == "secagg+"
    assert MaskingAggregator("complete").name == "secagg"


def test_masking_aggregator_harary_degree_override() -> None:
    aggregator = MaskingAggregator("harary", degree=4)
    graph, threshold = aggregator.build_graph(list(range(12)))
    assert graph.max_degree == 4
    assert threshold == 3
    updates = _updates(12, seed=5)
    result = aggregator.aggregate(updates)
    plain = PlainAggregator().aggregate(updates)
    assert np.max(np.abs(result.total - plain.total)) <= 12 * _step(1.0, 16)


def test_masking_aggregator_accepts_graph_callable_when_semi_honest() -> None:
    aggregator = MaskingAggregator(complete_graph, threshold=3, threat_model="semi-honest")
    updates = _updates(5, seed=6)
    result = aggregator.aggregate(updates, dropouts={4: 1})
    plain = PlainAggregator().aggregate(updates, dropouts={4: 1})
    assert result.survivors == (0, 1, 2, 3)
    assert np.max(np.abs(result.total - plain.total)) <= 5 * _step(1.0, 16)


def test_masking_aggregator_refuses_graph_callable_against_an_active_server() -> None:
    # No client could check a graph the server computes with its own function.
    with pytest.raises(ParameterError, match="custom graph"):
        MaskingAggregator(complete_graph)


@pytest.mark.parametrize("graph", ["complete", "harary"])
@pytest.mark.parametrize("threat_model", ["active", "semi-honest"])
def test_masking_aggregator_runs_in_both_threat_models(
    graph: Literal["complete", "harary"], threat_model: Literal["active", "semi-honest"]
) -> None:
    aggregator = MaskingAggregator(graph, threat_model=threat_model)
    assert aggregator.threat_model == threat_model
    updates = _updates(30, seed=8)
    dropouts = {1: 0, 2: 1, 3: 2, 4: 3, 5: 4}
    result = aggregator.aggregate(updates, dropouts=dropouts)
    plain = PlainAggregator().aggregate(updates, dropouts=dropouts)
    assert result.survivors == plain.survivors
    np.testing.assert_allclose(result.total, plain.total, atol=30 * _step(1.0, 16))
    report = aggregator.secure_sum.last_report
    assert report is not None and report.misbehaved == {}
    consistency = report.server_seconds.get("consistency", 0.0)
    assert (consistency > 0) == (threat_model == "active")


def test_masking_aggregator_mean_matches_plain_mean() -> None:
    updates = _updates(10, seed=7)
    result = MaskingAggregator().aggregate(updates, dropouts={3: 2})
    plain = PlainAggregator().aggregate(updates, dropouts={3: 2})
    np.testing.assert_allclose(result.mean, plain.mean, atol=_step(1.0, 16) * 10 / 9)


def test_masking_aggregator_successive_rounds_use_fresh_round_ids() -> None:
    aggregator = MaskingAggregator()
    updates = _updates(4, seed=8)
    first = aggregator.aggregate(updates)
    second = aggregator.aggregate(updates)
    assert aggregator.last_report is not None
    np.testing.assert_allclose(first.total, second.total, atol=2 * 4 * _step(1.0, 16))


# --------------------------------------------------------------------------------------------
# Weights and clipping
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("graph", "n"), GRAPH_CASES)
def test_masking_aggregator_weighted_total_weight_and_mean(graph: str, n: int) -> None:
    rng = np.random.default_rng(11)
    updates = _updates(n, seed=11)
    weights = {u: float(rng.integers(1, 21)) for u in range(n)}
    dropouts = {1: 0, 2: 2, 3: 3}
    result = MaskingAggregator(graph, max_weight=20).aggregate(
        updates, weights=weights, dropouts=dropouts
    )
    plain = PlainAggregator(max_weight=20).aggregate(updates, weights=weights, dropouts=dropouts)
    assert result.survivors == plain.survivors
    # Integer weights are encoded exactly.
    assert result.total_weight == plain.total_weight
    tolerance = n * _step(1.0, 16) * 20
    assert np.max(np.abs(result.total - plain.total)) <= tolerance
    assert plain.total_weight is not None
    assert np.max(np.abs(result.mean - plain.mean)) <= tolerance / plain.total_weight


def test_masking_aggregator_fractional_weights_are_unbiased_roughly() -> None:
    updates = {u: np.zeros(2) for u in range(6)}
    weights = {u: 2.5 for u in range(6)}
    result = MaskingAggregator(max_weight=4).aggregate(updates, weights=weights)
    # Each weight is encoded as 2.5 * (65535 // 4) rounded stochastically.
    assert result.total_weight is not None
    assert abs(result.total_weight - 15.0) <= 6 / (65535 // 4)


def test_masking_aggregator_clips_updates() -> None:
    n = 8
    updates = _updates(n, seed=12, scale=3.0)
    clipped = {u: np.clip(x, -1.0, 1.0) for u, x in updates.items()}
    result = MaskingAggregator(clip=1.0).aggregate(updates, dropouts={0: 1})
    plain = PlainAggregator(clip=1.0).aggregate(updates, dropouts={0: 1})
    pre_clipped = PlainAggregator(clip=1.0).aggregate(clipped, dropouts={0: 1})
    unclipped = PlainAggregator(clip=3.0).aggregate(updates, dropouts={0: 1})
    np.testing.assert_array_equal(plain.total, pre_clipped.total)
    assert np.max(np.abs(result.total - plain.total)) <= n * _step(1.0, 16)
    assert np.max(np.abs(result.total - unclipped.total)) > 1.0
    expected_clipped = sum(int(np.count_nonzero(np.abs(x) > 1.0)) for x in updates.values())
    assert result.stats.clipped_values == plain.stats.clipped_values == expected_clipped


def test_masking_aggregator_weights_updates_without_clipping_the_product() -> None:
    # The README's case: weights of 10 to 100 and updates in [-0.5, 0.5] must not be clipped.
    updates = {0: [0.5, -0.5], 1: [0.5, 0.1], 2: [-0.5, 0.0]}
    weights = {0: 100.0, 1: 10.0, 2: 40.0}
    result = MaskingAggregator(clip=1.0, max_weight=100).aggregate(updates, weights=weights)
    expected = np.array([50.0 + 5.0 - 20.0, -50.0 + 1.0 + 0.0])
    assert np.max(np.abs(result.total - expected)) <= 3 * _step(1.0, 16) * 100
    assert result.total_weight == 150.0
    assert result.stats.clipped_values == 0


def test_masking_aggregator_clips_the_update_before_weighting() -> None:
    updates = {0: [3.0, -0.5], 1: [0.5, 0.1], 2: [-0.5, 0.0]}
    weights = {0: 4.0, 1: 1.0, 2: 1.0}
    result = MaskingAggregator(clip=1.0, max_weight=4).aggregate(updates, weights=weights)
    # Client 0's update (3, -0.5) is clipped to (1, -0.5), then weighted by 4.
    expected = np.array([4.0 + 0.5 - 0.5, -2.0 + 0.1 + 0.0])
    assert np.max(np.abs(result.total - expected)) <= 3 * _step(1.0, 16) * 4
    assert result.total_weight == 6.0
    assert result.stats.clipped_values == 1


@pytest.mark.parametrize("kind", ["plain", "complete", "harary"])
def test_aggregators_refuse_weights_without_a_declared_max_weight(kind: str) -> None:
    aggregator: Any = PlainAggregator() if kind == "plain" else MaskingAggregator(kind)
    with pytest.raises(ParameterError, match="max_weight"):
        aggregator.aggregate({0: [0.1], 1: [0.2], 2: [0.3]}, weights={0: 1, 1: 2, 2: 3})


# --------------------------------------------------------------------------------------------
# Failures
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("round_index", [0, 1, 2, 3])
def test_masking_aggregator_too_many_dropouts_raise(round_index: int) -> None:
    # Six clients, threshold 4: three silent clients leave too few at any round.
    updates = _updates(6, seed=13)
    aggregator = MaskingAggregator()
    with pytest.raises(InsufficientSurvivorsError):
        aggregator.aggregate(updates, dropouts={0: round_index, 1: round_index, 2: round_index})
    assert aggregator.last_report is not None
    assert aggregator.last_report.result is None


def test_masking_aggregator_needs_two_clients() -> None:
    with pytest.raises(ParameterError):
        MaskingAggregator().aggregate({0: [0.1, 0.2]})


BAD_INPUTS: list[tuple[str, dict[str, Any]]] = [
    ("empty", {"updates": {}}),
    ("mismatched lengths", {"updates": {0: [1.0, 2.0], 1: [1.0], 2: [0.0, 0.0]}}),
    ("2-D", {"updates": {0: [[1.0, 2.0]], 1: [[1.0, 2.0]], 2: [[0.0, 0.0]]}}),
    ("scalar", {"updates": {0: 1.0, 1: 2.0, 2: 3.0}}),
    ("NaN", {"updates": {0: [1.0, np.nan], 1: [1.0, 2.0], 2: [0.0, 0.0]}}),
    ("infinity", {"updates": {0: [1.0, 2.0], 1: [np.inf, 2.0], 2: [0.0, 0.0]}}),
    ("negative id", {"updates": {0: [1.0], -1: [1.0], 2: [0.0]}}),
    ("bool id", {"updates": {0: [1.0], True: [1.0], 2: [0.0]}}),
    ("string id", {"updates": {0: [1.0], "1": [1.0], 2: [0.0]}}),
    ("unknown dropout id", {"dropouts": {7: 1}}),
    ("dropout round 5", {"dropouts": {0: 5}}),
    ("dropout round -1", {"dropouts": {0: -1}}),
    ("dropout round float", {"dropouts": {0: 1.5}}),
    ("weights naming other clients", {"weights": {0: 1.0, 1: 1.0, 5: 1.0}}),
    ("weights missing a client", {"weights": {0: 1.0, 1: 1.0}}),
    ("negative weight", {"weights": {0: 1.0, 1: -1.0, 2: 1.0}}),
    ("NaN weight", {"weights": {0: 1.0, 1: np.nan, 2: 1.0}}),
    ("string weight", {"weights": {0: 1.0, 1: "2", 2: 1.0}}),
    ("string update", {"updates": {0: "1.0", 1: [0.5], 2: [0.0]}}),
    ("string values", {"updates": {0: ["1.0"], 1: ["0.5"], 2: ["0.0"]}}),
    ("complex values", {"updates": {0: [1 + 2j], 1: [0.5], 2: [0.0]}}),
    ("object values", {"updates": {0: [None], 1: [0.5], 2: [0.0]}}),
    ("updates not a mapping", {"updates": [[1.0], [0.5]]}),
]


@pytest.mark.parametrize("aggregator_kind", ["plain", "complete", "harary"])
@pytest.mark.parametrize(("label", "arguments"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_aggregators_reject_bad_inputs(
    aggregator_kind: str, label: str, arguments: dict[str, Any]
) -> None:
    aggregator: Any = (
        PlainAggregator() if aggregator_kind == "plain" else MaskingAggregator(aggregator_kind)
    )
    kwargs = {"updates": {0: [1.0, 2.0], 1: [0.5, 0.5], 2: [0.0, 0.0]}, **arguments}
    updates = kwargs.pop("updates")
    with pytest.raises(ParameterError):
        aggregator.aggregate(updates, **kwargs)


@pytest.mark.parametrize("kind", ["plain", "complete"])
def test_aggregators_reject_weight_above_max_weight(kind: str) -> None:
    updates = {0: [0.1], 1: [0.2], 2: [0.3]}
    aggregator: Any = (
        PlainAggregator(max_weight=15)
        if kind == "plain"
        else MaskingAggregator(value_bits=4, max_weight=15)
    )
    ok = aggregator.aggregate(updates, weights={0: 15.0, 1: 1.0, 2: 1.0})
    assert ok.total_weight == 17.0
    with pytest.raises(ParameterError, match="above the declared max_weight=15"):
        aggregator.aggregate(updates, weights={0: 16.0, 1: 1.0, 2: 1.0})


def test_masking_aggregator_accepts_max_weight_above_largest_level_without_bias() -> None:
    # max_weight beyond one coordinate's 15 levels: weights are encoded as w * 15/16.
    updates = {u: [0.0] for u in range(8)}
    aggregator = MaskingAggregator(value_bits=4, max_weight=16)
    result = aggregator.aggregate(updates, weights=dict.fromkeys(range(8), 16.0))
    assert result.total_weight == pytest.approx(128.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"graph": "ring"},
        {"graph": "complete", "degree": 4},
        {"clip": 0.0},
        {"clip": -1.0},
        {"clip": float("inf")},
        {"value_bits": 0},
        {"value_bits": 54},
    ],
    ids=repr,
)
def test_masking_aggregator_rejects_bad_configuration(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ParameterError):
        MaskingAggregator(**kwargs)


# --------------------------------------------------------------------------------------------
# Stats, transport, interface
# --------------------------------------------------------------------------------------------


def test_masking_aggregator_stats() -> None:
    n = 8
    updates = _updates(n, seed=14)
    dropouts = {0: 0, 5: 2}
    result = MaskingAggregator().aggregate(updates, dropouts=dropouts)
    stats = result.stats
    assert set(stats.seconds) == {"server", "client_mean", "client_max"}
    for party in ("server", "client_mean", "client_max"):
        assert set(stats.seconds[party]) == set(ROUND_NAMES)
        assert all(s >= 0.0 for s in stats.seconds[party].values())
    for name in ROUND_NAMES:
        assert stats.seconds["client_max"][name] >= stats.seconds["client_mean"][name]
    assert sum(stats.seconds["server"].values()) > 0.0
    for u in range(1, n):
        assert stats.bytes_sent[str(u)] > 0
        assert stats.bytes_received[str(u)] > 0
    assert stats.bytes_sent.get("0", 0) == 0
    # A client that uploaded sends more than one that dropped before uploading.
    assert stats.bytes_sent["1"] > stats.bytes_sent["5"]
    assert stats.wall_seconds > 0.0


def test_plain_aggregator_stats_are_empty() -> None:
    stats = PlainAggregator().aggregate({0: [1.0], 1: [2.0]}).stats
    assert dict(stats.bytes_sent) == {}
    assert dict(stats.seconds) == {}


@pytest.mark.parametrize(("graph", "n"), GRAPH_CASES)
def test_masking_aggregator_through_wire_gives_same_result(graph: str, n: int) -> None:
    updates = _updates(n, seed=15)
    weights = {u: float(u % 3 + 1) for u in range(n)}
    dropouts = {2: 0, 4: 1, 6: 2, 8: 3}
    plain = PlainAggregator(max_weight=3).aggregate(updates, weights=weights, dropouts=dropouts)
    direct = MaskingAggregator(graph, max_weight=3).aggregate(
        updates, weights=weights, dropouts=dropouts
    )
    wired = MaskingAggregator(graph, max_weight=3, through_wire=True).aggregate(
        updates, weights=weights, dropouts=dropouts
    )
    assert wired.survivors == direct.survivors == plain.survivors
    assert wired.dropped == direct.dropped == plain.dropped
    assert wired.total_weight == direct.total_weight == plain.total_weight
    tolerance = n * _step(1.0, 16) * 3
    assert np.max(np.abs(wired.total - plain.total)) <= tolerance
    assert np.max(np.abs(wired.total - direct.total)) <= 2 * tolerance
    if graph == "complete":
        # The byte counts are those of the encoded messages in both modes.
        assert dict(wired.stats.bytes_sent) == dict(direct.stats.bytes_sent)


@pytest.mark.parametrize(
    "aggregator",
    [PlainAggregator(), MaskingAggregator("complete"), MaskingAggregator("harary")],
    ids=["plain", "complete", "harary"],
)
def test_aggregators_implement_aggregator_protocol(aggregator: object) -> None:
    assert isinstance(aggregator, Aggregator)
    assert isinstance(aggregator.name, str)  # type: ignore[attr-defined]


def test_masking_aggregator_keeps_each_clients_identity_across_rounds() -> None:
    # The simulated trusted setup enrols a client once; a round that adds one new client works.
    aggregator = MaskingAggregator("complete")
    first = aggregator.aggregate(_updates(5, seed=9))
    keys = {u: key.public_bytes for u, key in aggregator.secure_sum._identities.items()}
    second = aggregator.aggregate(_updates(6, seed=10))
    assert first.survivors == (0, 1, 2, 3, 4) and second.survivors == (0, 1, 2, 3, 4, 5)
    later = aggregator.secure_sum._identities
    assert {u: later[u].public_bytes for u in keys} == keys and 5 in later
