"""Tests of ``protocols.aggregators.PaillierAggregator`` against the plaintext baseline.

The secure sum must match :class:`PlainAggregator` within the quantization error (n * step for
n summed clients), count and drop exactly the clients the dropout schedule says, carry the summed
weight exactly for integer weights, and enforce the packing headroom, with the single key holder
and with a 3-of-5 decryption committee (members dropping out down to the threshold). Keys are
small (1024-bit ``_generate_keypair_unchecked_size``, 512-bit
``_generate_threshold_keypair_unchecked_size``) so the whole module runs in seconds.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

from protocols.aggregators import (
    AggregationResult,
    Aggregator,
    PaillierAggregator,
    PlainAggregator,
)
from protocols.aggregators.paillier import check_committee
from protocols.messages import MAX_DECRYPTORS
from protocols.paillier import Decryptor, PaillierResult
from protocols.simulate import ROUND_NAMES
from secagg.errors import InsufficientSurvivorsError, ParameterError
from secagg.hazmat import paillier as hazmat
from secagg.hazmat.paillier import PaillierKeypair, RandomnessMode, ThresholdKeyset

LENGTH = 40
CLIP = 1.0
VALUE_BITS = 16


@pytest.fixture(scope="module")
def keys() -> PaillierKeypair:
    return hazmat._generate_keypair_unchecked_size(1024)


@pytest.fixture(scope="module")
def committee_keys() -> ThresholdKeyset:
    return hazmat._generate_threshold_keypair_unchecked_size(512, decryptors=5, threshold=3)


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
    # Rounds 0, 1 and 2 were decrypted, one each; only the last is remembered.
    assert aggregator.key_holder.last_round == 2


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
    assert aggregator.key_holder.last_round is None


def test_paillier_aggregator_headroom_beyond_64_bit_slots_raises(keys: PaillierKeypair) -> None:
    with pytest.raises(ParameterError):
        _aggregator(keys, value_bits=53, max_clients=2**12)


def _committee_aggregator(committee_keys: ThresholdKeyset, **options: Any) -> PaillierAggregator:
    settings: dict[str, Any] = {
        "clip": CLIP,
        "value_bits": VALUE_BITS,
        "max_clients": 8,
        "decryptors": 5,
        "decryption_threshold": 3,
        "threshold_keys": committee_keys,
    }
    settings.update(options)
    return PaillierAggregator(**settings)


def _members(aggregator: PaillierAggregator) -> list[Decryptor]:
    decryption = aggregator.secure_sum.decryption
    assert isinstance(decryption, list)
    return decryption


def _decryptors_used(aggregator: PaillierAggregator) -> tuple[int, ...]:
    report = aggregator.last_report
    assert report is not None and isinstance(report.result, PaillierResult)
    return report.result.decryptors


@pytest.mark.parametrize("mode", list(RandomnessMode))
@pytest.mark.parametrize("through_wire", [False, True])
def test_paillier_committee_aggregator_matches_plain_with_dropouts(
    committee_keys: ThresholdKeyset, mode: RandomnessMode, through_wire: bool
) -> None:
    updates = _updates(7, seed=21)
    dropouts = {0: 0, 2: 2, 4: 3, 5: 1}
    aggregator = _committee_aggregator(committee_keys, mode=mode, through_wire=through_wire)
    assert (aggregator.decryptors, aggregator.decryption_threshold) == (5, 3)
    result = aggregator.aggregate(updates, dropouts=dropouts)
    plain = PlainAggregator().aggregate(updates, dropouts=dropouts)
    assert plain.survivors == (1, 3, 4, 6)
    _assert_close_to_plain(result, plain)
    np.testing.assert_allclose(result.mean, plain.mean, atol=_step())
    assert _decryptors_used(aggregator) == (1, 2, 3)


def test_paillier_committee_aggregator_agrees_with_the_single_key_holder(
    keys: PaillierKeypair, committee_keys: ThresholdKeyset
) -> None:
    # Both backends land within n steps of Plain, hence within 2 n steps of each other.
    updates = _updates(6, seed=22)
    weights = {u: float(u + 1) for u in range(6)}
    single = _aggregator(keys, max_weight=6).aggregate(updates, weights=weights)
    committee = _committee_aggregator(committee_keys, max_weight=6).aggregate(
        updates, weights=weights
    )
    plain = PlainAggregator(max_weight=6).aggregate(updates, weights=weights)
    _assert_close_to_plain(committee, plain, max_weight=6)
    assert committee.total_weight == single.total_weight == plain.total_weight == 21.0
    assert np.max(np.abs(committee.total - single.total)) <= 2 * 6 * _step() * 6


@pytest.mark.parametrize("silent", [(1, 2), (3, 5)], ids=str)
def test_paillier_committee_aggregator_survives_members_down_to_threshold(
    committee_keys: ThresholdKeyset, silent: tuple[int, ...]
) -> None:
    aggregator = _committee_aggregator(committee_keys)
    aggregator.secure_sum.decryptor_dropouts = silent
    updates = _updates(4, seed=23)
    result = aggregator.aggregate(updates)
    _assert_close_to_plain(result, PlainAggregator().aggregate(updates))
    assert _decryptors_used(aggregator) == tuple(i for i in range(1, 6) if i not in silent)


def test_paillier_committee_aggregator_below_threshold_members_raises(
    committee_keys: ThresholdKeyset,
) -> None:
    aggregator = _committee_aggregator(committee_keys)
    aggregator.secure_sum.decryptor_dropouts = (1, 2, 3)
    with pytest.raises(InsufficientSurvivorsError, match="2 of 5 decryptors"):
        aggregator.aggregate(_updates(4, seed=24))


def test_paillier_committee_aggregator_runs_several_rounds(
    committee_keys: ThresholdKeyset,
) -> None:
    aggregator = _committee_aggregator(committee_keys)
    for seed in range(3):
        updates = _updates(3 + seed, seed=30 + seed)
        result = aggregator.aggregate(updates)
        _assert_close_to_plain(result, PlainAggregator().aggregate(updates))
    # The same members served every round (new clients joined the roster on the way).
    assert [m.last_round for m in _members(aggregator)] == [2] * 5
    with pytest.raises(ParameterError, match="no single key holder"):
        _ = aggregator.key_holder


def test_paillier_aggregator_refuses_threshold_keys_of_another_shape(
    committee_keys: ThresholdKeyset,
) -> None:
    with pytest.raises(ParameterError, match="3-of-5, not 4-of-5"):
        _committee_aggregator(committee_keys, decryption_threshold=4)
    with pytest.raises(ParameterError, match="3-of-5, not 3-of-4"):
        _committee_aggregator(committee_keys, decryptors=4)


@pytest.mark.parametrize(
    ("decryptors", "threshold", "expected"),
    [
        (1, None, (1, 1)),
        (1, 1, (1, 1)),
        (2, 2, (2, 2)),
        (5, None, (5, 3)),
        (5, 3, (5, 3)),
        (5, 5, (5, 5)),
        (MAX_DECRYPTORS, None, (MAX_DECRYPTORS, 33)),
    ],
)
def test_check_committee_accepts_and_defaults_to_a_majority(
    decryptors: int, threshold: int | None, expected: tuple[int, int]
) -> None:
    assert check_committee(decryptors, threshold) == expected


@pytest.mark.parametrize(
    ("decryptors", "threshold", "match"),
    [
        (0, None, "decryptors must lie in 1 .. 64, got 0"),
        (MAX_DECRYPTORS + 1, None, "decryptors must lie in 1 .. 64, got 65"),
        (-5, 3, "decryptors must lie in 1 .. 64"),
        (True, None, "decryptors must be an int"),
        (5.0, 3, "decryptors must be an int"),
        ("5", 3, "decryptors must be an int"),
        (5, "3", "decryption_threshold must be an int"),
        (5, True, "decryption_threshold must be an int"),
        (5, 3.0, "decryption_threshold must be an int"),
        (1, 2, "a single key holder decrypts alone"),
        (1, 0, "a single key holder decrypts alone"),
        (5, 1, "decryption_threshold must lie in 3 .. 5"),
        (5, 2, "decryption_threshold must lie in 3 .. 5"),
        (5, 6, "decryption_threshold must lie in 3 .. 5"),
        (5, 0, "decryption_threshold must lie in 3 .. 5"),
    ],
)
def test_check_committee_argument_errors(decryptors: object, threshold: object, match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        check_committee(decryptors, threshold)


def test_paillier_aggregator_committee_argument_errors_come_before_key_generation() -> None:
    # No key is generated (2048-bit dealing takes seconds) for a committee that cannot exist.
    with pytest.raises(ParameterError, match=r"decryption_threshold must lie in 3 \.\. 5"):
        PaillierAggregator(decryptors=5, decryption_threshold=1)
    with pytest.raises(ParameterError, match=r"decryptors must lie in 1 \.\. 64"):
        PaillierAggregator(decryptors=0)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"processes": 0}, "processes must be None"),
        ({"min_contributors": 1}, "min_contributors must be >= 2"),
        ({"decryptors": 3, "keypair": "not a key"}, "keypair= is a single key holder's"),
        ({"threshold_keys": "not a key set"}, "threshold_keys= is a committee's"),
    ],
)
def test_paillier_aggregator_refuses_settings_no_round_could_use(
    options: dict[str, object], expected: str
) -> None:
    with pytest.raises(ParameterError, match=re.escape(expected)):
        PaillierAggregator(**options)  # type: ignore[arg-type]


def test_paillier_aggregator_needs_min_contributors_clients(
    keys: PaillierKeypair,
) -> None:
    aggregator = PaillierAggregator(keypair=keys, max_clients=4, min_contributors=3)
    with pytest.raises(ParameterError, match="2 client\\(s\\) take part"):
        aggregator.aggregate({0: np.zeros(4), 1: np.zeros(4)})
