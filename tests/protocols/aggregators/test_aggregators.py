"""Tests of the aggregation backends: the plaintext baseline and SecAgg / SecAgg+ by masking."""

from __future__ import annotations

import re
import warnings
from typing import Any, Literal, cast

import numpy as np
import pytest

from protocols.aggregators import (
    AggregationResult,
    Aggregator,
    MaskingAggregator,
    MaskingBackend,
    PaillierAggregator,
    PlainAggregator,
    make_aggregator,
)
from protocols.defaults import BACKEND_NAMES, DEFAULT_CLIP, DEFAULT_VALUE_BITS
from protocols.graph import complete_graph
from protocols.simulate import ROUND_NAMES
from secagg.errors import InsufficientSurvivorsError, ParameterError
from secagg.hazmat.paillier import _generate_keypair_unchecked_size

LENGTH = 16


def _updates(n: int, seed: int, scale: float = 1.0, length: int = LENGTH) -> dict[int, Any]:
    rng = np.random.default_rng(seed)
    return {u: rng.uniform(-scale, scale, size=length) for u in range(n)}


def _step(clip: float, value_bits: int) -> float:
    return 2 * clip / (2**value_bits - 1)


#: The quantization step of an aggregator built with the shared defaults.
DEFAULT_STEP = _step(DEFAULT_CLIP, DEFAULT_VALUE_BITS)


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

GRAPH_CASES = [("secagg", 12), ("secagg+", 30)]


@pytest.mark.parametrize(("protocol", "n"), GRAPH_CASES)
@pytest.mark.parametrize(("seed", "clip", "value_bits"), [(0, 1.0, 16), (1, 0.5, 8), (2, 3.0, 24)])
def test_masking_aggregator_matches_plain_sum_with_dropouts_every_round(
    protocol: Literal["secagg", "secagg+"], n: int, seed: int, clip: float, value_bits: int
) -> None:
    rng = np.random.default_rng(seed)
    updates = _updates(n, seed, scale=clip)
    chosen = rng.choice(n, size=4, replace=False)
    dropouts = {int(u): r for r, u in enumerate(chosen)}
    aggregator = MaskingAggregator(protocol, clip=clip, value_bits=value_bits)
    result = aggregator.aggregate(updates, dropouts=dropouts)
    plain = PlainAggregator(clip=clip).aggregate(updates, dropouts=dropouts)
    assert result.survivors == plain.survivors
    assert result.dropped == plain.dropped
    assert set(result.dropped) == {int(u) for u in chosen[:3]}
    assert result.total.dtype == np.float64
    assert result.total.shape == (LENGTH,)
    assert np.max(np.abs(result.total - plain.total)) <= n * _step(clip, value_bits)
    assert result.total_weight is None


def test_masking_aggregator_secagg_plus_uses_a_sparse_graph() -> None:
    aggregator = MaskingAggregator("secagg+")
    graph, threshold = aggregator.build_graph(list(range(30)))
    assert not graph.is_complete()
    assert graph.max_degree == 24
    assert 2 <= threshold <= graph.max_degree + 1
    assert aggregator.name == "secagg+"
    assert MaskingAggregator("secagg").name == "secagg"


def test_masking_aggregator_secagg_plus_degree_override() -> None:
    aggregator = MaskingAggregator("secagg+", degree=4)
    graph, threshold = aggregator.build_graph(list(range(12)))
    assert graph.max_degree == 4
    assert threshold == 3
    updates = _updates(12, seed=5)
    result = aggregator.aggregate(updates)
    plain = PlainAggregator().aggregate(updates)
    assert np.max(np.abs(result.total - plain.total)) <= 12 * DEFAULT_STEP


def test_masking_aggregator_accepts_graph_callable_when_semi_honest() -> None:
    aggregator = MaskingAggregator(complete_graph, threshold=3, threat_model="semi-honest")
    updates = _updates(5, seed=6)
    result = aggregator.aggregate(updates, dropouts={4: 1})
    plain = PlainAggregator().aggregate(updates, dropouts={4: 1})
    assert result.survivors == (0, 1, 2, 3)
    assert np.max(np.abs(result.total - plain.total)) <= 5 * DEFAULT_STEP


def test_masking_aggregator_refuses_graph_callable_against_an_active_server() -> None:
    # No client could check a graph the server computes with its own function.
    with pytest.raises(ParameterError, match="custom graph"):
        MaskingAggregator(complete_graph)


@pytest.mark.parametrize("protocol", ["secagg", "secagg+"])
@pytest.mark.parametrize("threat_model", ["active", "semi-honest"])
def test_masking_aggregator_runs_in_both_threat_models(
    protocol: Literal["secagg", "secagg+"], threat_model: Literal["active", "semi-honest"]
) -> None:
    aggregator = MaskingAggregator(protocol, threat_model=threat_model)
    assert aggregator.threat_model == threat_model
    updates = _updates(30, seed=8)
    dropouts = {1: 0, 2: 1, 3: 2, 4: 3, 5: 4}
    result = aggregator.aggregate(updates, dropouts=dropouts)
    plain = PlainAggregator().aggregate(updates, dropouts=dropouts)
    assert result.survivors == plain.survivors
    np.testing.assert_allclose(result.total, plain.total, atol=30 * DEFAULT_STEP)
    report = aggregator.secure_sum.last_report
    assert report is not None and report.misbehaved == {}
    consistency = report.server_seconds.get("consistency", 0.0)
    assert (consistency > 0) == (threat_model == "active")


def test_masking_aggregator_mean_matches_plain_mean() -> None:
    updates = _updates(10, seed=7)
    result = MaskingAggregator().aggregate(updates, dropouts={3: 2})
    plain = PlainAggregator().aggregate(updates, dropouts={3: 2})
    np.testing.assert_allclose(result.mean, plain.mean, atol=DEFAULT_STEP * 10 / 9)


def test_masking_aggregator_successive_rounds_use_fresh_round_ids() -> None:
    aggregator = MaskingAggregator()
    updates = _updates(4, seed=8)
    first = aggregator.aggregate(updates)
    second = aggregator.aggregate(updates)
    assert aggregator.last_report is not None
    np.testing.assert_allclose(first.total, second.total, atol=2 * 4 * DEFAULT_STEP)


# --------------------------------------------------------------------------------------------
# Weights and clipping
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("protocol", "n"), GRAPH_CASES)
def test_masking_aggregator_weighted_total_weight_and_mean(
    protocol: Literal["secagg", "secagg+"], n: int
) -> None:
    rng = np.random.default_rng(11)
    updates = _updates(n, seed=11)
    weights = {u: float(rng.integers(1, 21)) for u in range(n)}
    dropouts = {1: 0, 2: 2, 3: 3}
    result = MaskingAggregator(protocol, max_weight=20).aggregate(
        updates, weights=weights, dropouts=dropouts
    )
    plain = PlainAggregator(max_weight=20).aggregate(updates, weights=weights, dropouts=dropouts)
    assert result.survivors == plain.survivors
    # Integer weights are encoded exactly.
    assert result.total_weight == plain.total_weight
    tolerance = n * DEFAULT_STEP * 20
    assert np.max(np.abs(result.total - plain.total)) <= tolerance
    assert plain.total_weight is not None
    assert np.max(np.abs(result.mean - plain.mean)) <= tolerance / plain.total_weight


def test_masking_aggregator_fractional_weights_are_unbiased_roughly() -> None:
    updates = {u: np.zeros(2) for u in range(6)}
    weights = {u: 2.5 for u in range(6)}
    result = MaskingAggregator(max_weight=4).aggregate(updates, weights=weights)
    # Each weight is encoded as 2.5 * (levels // 4) rounded stochastically.
    levels = 2**DEFAULT_VALUE_BITS - 1
    assert result.total_weight is not None
    assert abs(result.total_weight - 15.0) <= 6 / (levels // 4)


def test_masking_aggregator_clips_updates() -> None:
    n = 8
    updates = _updates(n, seed=12, scale=3.0)
    clipped = {u: np.clip(x, -1.0, 1.0) for u, x in updates.items()}
    result = MaskingAggregator(clip=1.0).aggregate(updates, dropouts={0: 1})
    plain = PlainAggregator(clip=1.0).aggregate(updates, dropouts={0: 1})
    pre_clipped = PlainAggregator(clip=1.0).aggregate(clipped, dropouts={0: 1})
    unclipped = PlainAggregator(clip=3.0).aggregate(updates, dropouts={0: 1})
    np.testing.assert_array_equal(plain.total, pre_clipped.total)
    assert np.max(np.abs(result.total - plain.total)) <= n * DEFAULT_STEP
    assert np.max(np.abs(result.total - unclipped.total)) > 1.0
    expected_clipped = sum(int(np.count_nonzero(np.abs(x) > 1.0)) for x in updates.values())
    assert result.stats.clipped_values == plain.stats.clipped_values == expected_clipped


def test_masking_aggregator_weights_updates_without_clipping_the_product() -> None:
    # The README's case: weights of 10 to 100 and updates in [-0.5, 0.5] must not be clipped.
    updates = {0: [0.5, -0.5], 1: [0.5, 0.1], 2: [-0.5, 0.0]}
    weights = {0: 100.0, 1: 10.0, 2: 40.0}
    result = MaskingAggregator(clip=1.0, max_weight=100).aggregate(updates, weights=weights)
    expected = np.array([50.0 + 5.0 - 20.0, -50.0 + 1.0 + 0.0])
    assert np.max(np.abs(result.total - expected)) <= 3 * DEFAULT_STEP * 100
    assert result.total_weight == 150.0
    assert result.stats.clipped_values == 0


def test_masking_aggregator_clips_the_update_before_weighting() -> None:
    updates = {0: [3.0, -0.5], 1: [0.5, 0.1], 2: [-0.5, 0.0]}
    weights = {0: 4.0, 1: 1.0, 2: 1.0}
    result = MaskingAggregator(clip=1.0, max_weight=4).aggregate(updates, weights=weights)
    # Client 0's update (3, -0.5) is clipped to (1, -0.5), then weighted by 4.
    expected = np.array([4.0 + 0.5 - 0.5, -2.0 + 0.1 + 0.0])
    assert np.max(np.abs(result.total - expected)) <= 3 * DEFAULT_STEP * 4
    assert result.total_weight == 6.0
    assert result.stats.clipped_values == 1


@pytest.mark.parametrize("kind", ["plain", "secagg", "secagg+"])
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


@pytest.mark.parametrize("aggregator_kind", ["plain", "secagg", "secagg+"])
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


@pytest.mark.parametrize("kind", ["plain", "secagg"])
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
        {"protocol": "ring"},
        {"protocol": "secagg", "degree": 4},
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


@pytest.mark.parametrize(("protocol", "n"), GRAPH_CASES)
def test_masking_aggregator_through_wire_gives_same_result(
    protocol: Literal["secagg", "secagg+"], n: int
) -> None:
    updates = _updates(n, seed=15)
    weights = {u: float(u % 3 + 1) for u in range(n)}
    dropouts = {2: 0, 4: 1, 6: 2, 8: 3}
    plain = PlainAggregator(max_weight=3).aggregate(updates, weights=weights, dropouts=dropouts)
    direct = MaskingAggregator(protocol, max_weight=3).aggregate(
        updates, weights=weights, dropouts=dropouts
    )
    wired = MaskingAggregator(protocol, max_weight=3, through_wire=True).aggregate(
        updates, weights=weights, dropouts=dropouts
    )
    assert wired.survivors == direct.survivors == plain.survivors
    assert wired.dropped == direct.dropped == plain.dropped
    assert wired.total_weight == direct.total_weight == plain.total_weight
    tolerance = n * DEFAULT_STEP * 3
    assert np.max(np.abs(wired.total - plain.total)) <= tolerance
    assert np.max(np.abs(wired.total - direct.total)) <= 2 * tolerance
    if protocol == "secagg":
        # The byte counts are those of the encoded messages in both modes.
        assert dict(wired.stats.bytes_sent) == dict(direct.stats.bytes_sent)


@pytest.mark.parametrize(
    "aggregator",
    [PlainAggregator(), MaskingAggregator("secagg"), MaskingAggregator("secagg+")],
    ids=["plain", "secagg", "secagg+"],
)
def test_aggregators_implement_aggregator_protocol(aggregator: object) -> None:
    assert isinstance(aggregator, Aggregator)
    assert isinstance(aggregator.name, str)  # type: ignore[attr-defined]


def test_masking_aggregator_keeps_each_clients_identity_across_rounds() -> None:
    # The simulated trusted setup enrols a client once; a round that adds one new client works.
    aggregator = MaskingAggregator("secagg")
    first = aggregator.aggregate(_updates(5, seed=9))
    keys = {u: key.public_bytes for u, key in aggregator.secure_sum._identities.items()}
    second = aggregator.aggregate(_updates(6, seed=10))
    assert first.survivors == (0, 1, 2, 3, 4) and second.survivors == (0, 1, 2, 3, 4, 5)
    later = aggregator.secure_sum._identities
    assert {u: later[u].public_bytes for u in keys} == keys and 5 in later


# --------------------------------------------------------------------------------------------
# Backend names: the shared ones, the deprecated graph names, the factory
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("old", "new"), [("complete", "secagg"), ("harary", "secagg+")])
def test_masking_aggregator_graph_names_still_work_with_a_deprecation_warning(
    old: str, new: str
) -> None:
    with pytest.warns(DeprecationWarning, match=re.escape(f"use protocol={new!r}")) as caught:
        aggregator = MaskingAggregator(cast(MaskingBackend, old))
    assert len(caught) == 1
    # The warning names the caller's line, not the library's.
    assert caught[0].filename == __file__
    assert aggregator.name == aggregator.protocol == new
    assert aggregator.policy.protocol == new


def test_masking_aggregator_graph_keyword_still_works_with_one_deprecation_warning() -> None:
    with pytest.warns(DeprecationWarning, match=r"graph='harary'.*protocol='secagg\+'") as caught:
        aggregator = MaskingAggregator(graph=cast(MaskingBackend, "harary"))
    assert len(caught) == 1 and caught[0].filename == __file__
    assert aggregator.name == "secagg+"
    with pytest.warns(DeprecationWarning, match="graph= keyword") as caught:
        assert MaskingAggregator(graph="secagg+").name == "secagg+"
    assert len(caught) == 1 and caught[0].filename == __file__


def test_masking_aggregator_refuses_the_backend_given_twice() -> None:
    with pytest.raises(ParameterError, match="once"):
        MaskingAggregator("secagg+", graph="secagg")


def test_masking_aggregator_backend_names_do_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert MaskingAggregator("secagg").name == "secagg"
        assert MaskingAggregator("secagg+").name == "secagg+"


def test_masking_aggregator_defaults_are_the_shared_ones() -> None:
    for aggregator in (MaskingAggregator(), make_aggregator("secagg+")):
        assert isinstance(aggregator, MaskingAggregator)
        assert (aggregator.clip, aggregator.value_bits) == (DEFAULT_CLIP, DEFAULT_VALUE_BITS)
        assert aggregator.policy.value_bits == DEFAULT_VALUE_BITS
    assert PlainAggregator().clip == DEFAULT_CLIP


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("plain", PlainAggregator),
        ("secagg", MaskingAggregator),
        ("secagg+", MaskingAggregator),
        ("paillier", PaillierAggregator),
    ],
)
def test_make_aggregator_builds_every_backend_name(name: str, cls: type) -> None:
    assert name in BACKEND_NAMES
    options = {"keypair": _generate_keypair_unchecked_size(1024)} if name == "paillier" else {}
    aggregator = make_aggregator(name, clip=0.5, **options)
    assert isinstance(aggregator, cls)
    assert aggregator.name == name
    assert aggregator.clip == 0.5


def test_make_aggregator_passes_backend_options_and_threat_model() -> None:
    aggregator = make_aggregator("secagg+", value_bits=12, threat_model="semi-honest", degree=4)
    assert isinstance(aggregator, MaskingAggregator)
    assert (aggregator.value_bits, aggregator.degree) == (12, 4)
    assert aggregator.threat_model == "semi-honest"
    updates = _updates(12, seed=16)
    result = aggregator.aggregate(updates)
    plain = PlainAggregator().aggregate(updates)
    assert np.max(np.abs(result.total - plain.total)) <= 12 * _step(1.0, 12)


@pytest.mark.parametrize("name", ["harary", "complete", "SecAgg", "", "dp"])
def test_make_aggregator_refuses_unknown_names_listing_the_choices(name: str) -> None:
    with pytest.raises(ParameterError, match="choose one of plain, secagg, secagg\\+, paillier"):
        make_aggregator(name)


def test_make_aggregator_refuses_an_option_the_backend_does_not_take() -> None:
    with pytest.raises(ParameterError, match=r"'plain' takes no option 'degree'.*max_weight"):
        make_aggregator("plain", degree=4)
    with pytest.raises(ParameterError, match="no option 'protocol'"):
        make_aggregator("secagg", protocol="secagg+")
