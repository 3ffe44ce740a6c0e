"""Tests of ``protocols.aggregators.PaillierAggregator`` against the plaintext baseline.

The secure sum must match :class:`PlainAggregator` within the quantization error (n * step for
n summed clients), count and drop exactly the clients the dropout schedule says, carry the summed
weight exactly for integer weights, and enforce the packing headroom. Keys are 1024-bit
(``_generate_keypair_unchecked_size``) so the whole module runs in seconds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from protocols.aggregators import (
    AggregationResult,
    Aggregator,
    PaillierAggregator,
    PlainAggregator,
)
from protocols.simulate import ROUND_NAMES
from secagg.errors import InsufficientSurvivorsError, ParameterError
from secagg.hazmat import paillier as hazmat
from secagg.hazmat.paillier import PaillierKeypair, RandomnessMode

LENGTH = 40
CLIP = 1.0
VALUE_BITS = 16


@pytest.fixture(scope="module")
def keys() -> PaillierKeypair:
    return hazmat._generate_keypair_unchecked_size(1024)


def _aggregator(keys: PaillierKeypair, **options: Any) -> PaillierAggregator:
    settings: dict[str, Any] = {
        "clip": CLIP,
        "value_bits": VALUE_BITS,
        "max_clients": 8,
        "keypair": keys,
    }
    settings.update(options)
    return PaillierAggregator(**settings)


def _updates(n: int, seed: int, scale: float = 0.9) -> dict[int, Any]:
    rng = np.random.default_rng(seed)
    return {u: rng.uniform(-scale, scale, size=LENGTH) for u in range(n)}


def _step(clip: float = CLIP, value_bits: int = VALUE_BITS) -> float:
    return 2 * clip / ((1 << value_bits) - 1)


def _assert_close_to_plain(
    result: AggregationResult, plain: AggregationResult, max_weight: float = 1.0
) -> None:
    assert result.survivors == plain.survivors
    assert result.dropped == plain.dropped
    assert result.total.dtype == np.float64
    assert result.total.shape == plain.total.shape
    # Stochastic rounding moves each value by less than one step: n summed values, n steps.
    bound = len(plain.survivors) * _step() * max_weight
    assert np.max(np.abs(result.total - plain.total)) <= bound


def test_paillier_aggregator_is_an_aggregator(keys: PaillierKeypair) -> None:
    aggregator = _aggregator(keys)
    assert isinstance(aggregator, Aggregator)
    assert aggregator.name == "paillier"


@pytest.mark.parametrize("mode", list(RandomnessMode))
@pytest.mark.parametrize("through_wire", [False, True])
def test_paillier_aggregator_matches_plain_with_dropouts(
    keys: PaillierKeypair, mode: RandomnessMode, through_wire: bool
) -> None:
    updates = _updates(7, seed=1)
    dropouts = {0: 0, 2: 2, 4: 3, 5: 1}
    aggregator = _aggregator(keys, mode=mode, through_wire=through_wire)
    result = aggregator.aggregate(updates, dropouts=dropouts)
    plain = PlainAggregator().aggregate(updates, dropouts=dropouts)
    # Rounds 0-2 drop before the upload; round 3 comes after it, so client 4 still counts.
    assert plain.survivors == (1, 3, 4, 6)
    assert plain.dropped == (0, 2, 5)
    _assert_close_to_plain(result, plain)
    assert result.total_weight is None
    np.testing.assert_allclose(result.mean, plain.mean, atol=_step())


def test_paillier_aggregator_without_dropouts_sums_everyone(keys: PaillierKeypair) -> None:
    updates = _updates(8, seed=2)
    result = _aggregator(keys).aggregate(updates)
    plain = PlainAggregator().aggregate(updates)
    assert result.survivors == tuple(range(8))
    _assert_close_to_plain(result, plain)


@pytest.mark.parametrize("mode", list(RandomnessMode))
def test_paillier_aggregator_integer_weights_sum_exactly(
    keys: PaillierKeypair, mode: RandomnessMode
) -> None:
    updates = _updates(5, seed=3)
    weights = {0: 1.0, 1: 2.0, 2: 3.0, 3: 5.0, 4: 4.0}
    dropouts = {1: 2, 3: 3}
    aggregator = _aggregator(keys, mode=mode, max_weight=5)
    result = aggregator.aggregate(updates, weights=weights, dropouts=dropouts)
    plain = PlainAggregator(max_weight=5).aggregate(updates, weights=weights, dropouts=dropouts)
    _assert_close_to_plain(result, plain, max_weight=5)
    assert plain.total_weight == 1.0 + 3.0 + 5.0 + 4.0
    assert result.total_weight == plain.total_weight
    np.testing.assert_allclose(
        result.mean, plain.mean, atol=len(plain.survivors) * _step() * 5 / plain.total_weight
    )


def test_paillier_aggregator_stats_are_reported(keys: PaillierKeypair) -> None:
    aggregator = _aggregator(keys)
    updates = _updates(4, seed=4)
    result = aggregator.aggregate(updates, dropouts={1: 0})
    stats = result.stats
    assert set(stats.seconds) == {"server", "client_mean", "client_max"}
    assert set(stats.seconds["client_mean"]) == set(ROUND_NAMES)
    assert stats.seconds["client_max"]["masked_input"] > 0
    assert stats.seconds["server"]["masked_input"] > 0
    assert stats.wall_seconds > 0
    assert set(stats.bytes_sent) == {"0", "1", "2", "3"}
    assert stats.bytes_sent["1"] == 0
    assert all(stats.bytes_sent[u] > 0 for u in ("0", "2", "3"))
    assert all(stats.bytes_received[u] > 0 for u in ("0", "2", "3"))
    report = aggregator.last_report
    assert report is not None
    assert report.key_holder_seconds > 0
    assert report.key_holder_bytes_received > 0
    assert report.key_holder_bytes_sent > 0


def test_paillier_aggregator_runs_several_rounds(keys: PaillierKeypair) -> None:
    # One key holder decrypts one aggregate per round; each call is a new round.
    aggregator = _aggregator(keys)
    for seed in range(3):
        updates = _updates(3, seed=10 + seed)
        result = aggregator.aggregate(updates)
        _assert_close_to_plain(result, PlainAggregator().aggregate(updates))
    assert len(aggregator.key_holder.seen) == 3
    assert [m.round_id for m in aggregator.key_holder.seen] == [0, 1, 2]


def test_paillier_aggregator_more_clients_than_max_clients_raises(keys: PaillierKeypair) -> None:
    aggregator = _aggregator(keys, max_clients=4)
    aggregator.aggregate(_updates(4, seed=5))
    with pytest.raises(ParameterError, match="max_clients"):
        aggregator.aggregate(_updates(5, seed=5))


def test_paillier_aggregator_at_max_clients_with_extreme_updates(keys: PaillierKeypair) -> None:
    # Every client at +clip: every slot holds max_clients * (2^value_bits - 1), its largest sum.
    updates = {u: np.full(LENGTH, 5.0 * CLIP) for u in range(4)}
    result = _aggregator(keys, max_clients=4).aggregate(updates)
    np.testing.assert_allclose(result.total, np.full(LENGTH, 4 * CLIP), atol=1e-9)
    low = {u: np.full(LENGTH, -5.0 * CLIP) for u in range(4)}
    result = _aggregator(keys, max_clients=4).aggregate(low)
    np.testing.assert_allclose(result.total, np.full(LENGTH, -4 * CLIP), atol=1e-9)


def test_paillier_aggregator_too_few_survivors_raises(keys: PaillierKeypair) -> None:
    aggregator = _aggregator(keys)
    with pytest.raises(InsufficientSurvivorsError):
        aggregator.aggregate(_updates(3, seed=6), dropouts={0: 0, 1: 2})
    assert aggregator.key_holder.seen == []


def test_paillier_aggregator_headroom_beyond_64_bit_slots_raises(keys: PaillierKeypair) -> None:
    with pytest.raises(ParameterError):
        _aggregator(keys, value_bits=53, max_clients=2**12)
