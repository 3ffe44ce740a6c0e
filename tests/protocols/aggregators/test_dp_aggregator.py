"""Tests of distributed DP over a real masking round: arithmetic, noise, accounting, refusals.

Calibration runs ``dp-accounting`` and takes a second or two, so each configuration is built once
per module and every test works on a deep copy (fresh round counter, same parameters).
"""

from __future__ import annotations

import copy
import logging
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from protocols.aggregators import Aggregator
from protocols.dp_aggregator import DistributedDPAggregator, PrivacyBudgetWarning
from protocols.masking import AggregateResult
from secagg.dp import DPWrapAroundWarning, PrivacyAccountant, clip_l2
from secagg.errors import InsufficientSurvivorsError, ParameterError

DIMENSION = 2000
CLIENTS = 6
EXPECTED = 5
DELTA = 1e-5
RingArray = npt.NDArray[np.unsignedinteger]

# dp-accounting logs every fractional RDP order it skips while calibrating.
logging.getLogger("absl").setLevel(logging.ERROR)


@pytest.fixture(scope="module")
def accounted() -> DistributedDPAggregator:
    """Epsilon 2 over 3 rounds at q = 0.5: real subsampled accounting (SecAgg, complete graph)."""
    return DistributedDPAggregator(
        target_epsilon=2.0,
        target_delta=DELTA,
        rounds=3,
        sampling_rate=0.5,
        expected_clients=EXPECTED,
        max_clients=CLIENTS,
        dimension=DIMENSION,
        clip_norm=1.0,
    )


@pytest.fixture(scope="module")
def weak() -> DistributedDPAggregator:
    """Epsilon 100 in one round (z about 0.1): small noise, for arithmetic checks (SecAgg+)."""
    return DistributedDPAggregator(
        target_epsilon=100.0,
        target_delta=DELTA,
        rounds=1,
        sampling_rate=1.0,
        expected_clients=EXPECTED,
        max_clients=CLIENTS,
        dimension=DIMENSION,
        clip_norm=1.0,
        protocol="secagg+",
        mechanism="skellam",
    )


def _updates(seed: int, scale: float = 0.05) -> dict[int, npt.NDArray[np.float64]]:
    rng = np.random.default_rng(seed)
    return {u: rng.normal(0.0, scale, DIMENSION) for u in range(CLIENTS)}


def _ring_sum(vectors: list[RingArray], modulus_bits: int) -> npt.NDArray[np.uint64]:
    total = np.zeros(vectors[0].shape[0], dtype=np.uint64)
    for vector in vectors:
        total += vector.astype(np.uint64)
    return total & np.uint64((1 << modulus_bits) - 1)


class EncodeSpy:
    """Wraps ``mechanism.encode`` and records every (seed, ring vector) it returns."""

    def __init__(self, encode: Callable[[Any, bytes], RingArray]) -> None:
        self.encode = encode
        self.calls: list[tuple[bytes, RingArray]] = []

    def __call__(self, update: Any, rotation_seed: bytes) -> RingArray:
        encoded = self.encode(update, rotation_seed)
        self.calls.append((rotation_seed, encoded))
        return encoded


def _spy(aggregator: DistributedDPAggregator, monkeypatch: pytest.MonkeyPatch) -> EncodeSpy:
    spy = EncodeSpy(aggregator.mechanism.encode)
    monkeypatch.setattr(aggregator.mechanism, "encode", spy)
    return spy


def test_dp_aggregator_implements_the_aggregator_interface(
    accounted: DistributedDPAggregator, weak: DistributedDPAggregator
) -> None:
    assert isinstance(accounted, Aggregator)
    assert accounted.name == "dp-secagg"
    assert weak.name == "dp-secagg+"
    assert accounted.config.dimension == DIMENSION
    assert accounted.config.padded_dimension == 2048
    assert accounted.config.modulus_bits == 32
    # The trainer compares a per-coordinate ``clip`` attribute with its own; this one is L2.
    assert not hasattr(accounted, "clip")
    assert accounted.clip_norm == 1.0


def test_dp_aggregator_calibrates_the_noise_for_the_target(
    accounted: DistributedDPAggregator,
) -> None:
    spent = accounted.accountant.epsilon_after(accounted.planned_rounds)
    assert 0.95 * 2.0 <= spent <= 2.0
    assert accounted.config.noise_multiplier > 1.0
    assert accounted.epsilon_spent == 0.0


def test_dp_aggregator_result_is_the_decoded_ring_sum_of_the_encodings(
    weak: DistributedDPAggregator, monkeypatch: pytest.MonkeyPatch
) -> None:
    aggregator = copy.deepcopy(weak)
    spy = _spy(aggregator, monkeypatch)
    result = aggregator.aggregate(_updates(1), dropouts={0: 0, 5: 3})
    # A round-3 dropout had already uploaded its masked input: it is in the sum.
    assert result.survivors == (1, 2, 3, 4, 5)
    assert result.dropped == (0,)
    assert result.total_weight is None
    seeds = {seed for seed, _ in spy.calls}
    assert seeds == {aggregator.last_rotation_seed}
    encodings = dict(zip(range(CLIENTS), (vector for _, vector in spy.calls), strict=True))
    expected_ring = _ring_sum([encodings[u] for u in result.survivors], 32)
    report = aggregator.last_report
    assert report is not None and isinstance(report.result, AggregateResult)
    np.testing.assert_array_equal(report.result.vector.astype(np.uint64), expected_ring)
    decoded = aggregator.mechanism.decode(
        report.result.vector, len(result.survivors), aggregator.last_rotation_seed or b""
    )
    np.testing.assert_array_equal(result.total, decoded)
    assert result.stats.seconds["dp"]["client_encode_mean"] > 0.0
    assert set(result.stats.bytes_sent) == {str(u) for u in range(CLIENTS)}


@pytest.mark.parametrize("fixture", ["weak", "accounted"])
def test_dp_aggregator_sum_is_the_clipped_sum_plus_the_configured_noise(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    aggregator = copy.deepcopy(request.getfixturevalue(fixture))
    assert isinstance(aggregator, DistributedDPAggregator)
    updates = _updates(2)
    updates[3] = updates[3] * 1000.0  # far above the clip norm: must count with norm 1
    result = aggregator.aggregate(updates)
    clipped = sum(clip_l2(updates[u], aggregator.clip_norm) for u in result.survivors)
    residual = result.total - clipped
    config = aggregator.config
    # Six noise shares of variance sigma^2 / 5 each; the rounding adds about gamma^2 / 4 each.
    expected_sd = config.granularity * config.central_stddev * math.sqrt(CLIENTS / EXPECTED)
    assert abs(float(np.std(residual)) / expected_sd - 1.0) < 0.1
    assert abs(float(np.mean(residual))) < 5 * expected_sd / math.sqrt(DIMENSION)


def test_dp_aggregator_draws_a_fresh_rotation_seed_every_round(
    accounted: DistributedDPAggregator, monkeypatch: pytest.MonkeyPatch
) -> None:
    aggregator = copy.deepcopy(accounted)
    spy = _spy(aggregator, monkeypatch)
    aggregator.aggregate(_updates(3))
    aggregator.aggregate(_updates(4))
    first = {seed for seed, _ in spy.calls[:CLIENTS]}
    second = {seed for seed, _ in spy.calls[CLIENTS:]}
    assert len(first) == len(second) == 1
    assert first != second


def _library_epsilon(noise_multiplier: float, sampling_rate: float, rounds: int) -> float:
    """Epsilon straight from dp-accounting, independently of secagg.dp."""
    import dp_accounting

    accountant = dp_accounting.rdp.RdpAccountant(
        neighboring_relation=dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE
    )
    event = dp_accounting.PoissonSampledDpEvent(
        sampling_rate, dp_accounting.GaussianDpEvent(noise_multiplier)
    )
    accountant.compose(dp_accounting.SelfComposedDpEvent(event, rounds))
    return float(accountant.get_epsilon(DELTA))


def test_dp_aggregator_privacy_report_matches_the_accountant(
    accounted: DistributedDPAggregator,
) -> None:
    aggregator = copy.deepcopy(accounted)
    config = aggregator.config
    reference = PrivacyAccountant.for_config(config, sampling_rate=0.5, delta=DELTA)
    report = aggregator.privacy_report()
    assert report["epsilon"] == 0.0 and report["rounds"] == 0
    for rounds in (1, 2, 3):
        aggregator.aggregate(_updates(rounds), dropouts={2: 1})
        report = aggregator.privacy_report()
        assert report["rounds"] == aggregator.rounds_done == rounds
        # Five survivors of five noise shares each round: the calibrated noise, composed round
        # by round (equal to the planned composition up to the float sum's rounding).
        assert report["survivors"] == [EXPECTED] * rounds
        assert report["round_noise_multipliers"] == [config.noise_multiplier] * rounds
        assert report["epsilon"] == aggregator.epsilon_spent
        assert report["epsilon"] == pytest.approx(reference.epsilon_after(rounds), rel=1e-12)
        assert report["epsilon"] == pytest.approx(
            _library_epsilon(config.noise_multiplier, 0.5, rounds), rel=1e-9
        )
        assert report["noise_multiplier"] == config.noise_multiplier
        assert report["sampling_rate"] == 0.5
        assert report["delta"] == DELTA
        assert report["accountant"] == "RdpAccountant"
        assert report["target_epsilon"] == 2.0 and report["planned_rounds"] == 3
        assert report["mechanism"] == "discrete_gaussian"
        assert report["expected_clients"] == EXPECTED and report["max_clients"] == CLIENTS
    assert isinstance(report["epsilon"], float) and report["epsilon"] <= 2.0


def test_dp_aggregator_warns_when_the_planned_rounds_are_exceeded(
    weak: DistributedDPAggregator,
) -> None:
    aggregator = copy.deepcopy(weak)
    aggregator.aggregate(_updates(5))
    within = aggregator.epsilon_spent
    with pytest.warns(PrivacyBudgetWarning, match="exceeds the 1 rounds"):
        aggregator.aggregate(_updates(6))
    assert aggregator.epsilon_spent > within


def test_dp_aggregator_leaves_room_in_the_ring_for_max_clients(
    accounted: DistributedDPAggregator,
) -> None:
    aggregator = copy.deepcopy(accounted)
    config = aggregator.config
    assert config.wrap_probability_for(CLIENTS) <= config.max_wrap_probability
    with warnings.catch_warnings():
        warnings.simplefilter("error", DPWrapAroundWarning)
        aggregator.aggregate(_updates(7))


def test_dp_aggregator_withholds_a_sum_with_too_few_noise_shares(
    accounted: DistributedDPAggregator,
) -> None:
    aggregator = copy.deepcopy(accounted)
    # Four survivors meet the masking threshold (4 of 6) but carry only 4/5 of the noise: the
    # round's floor of 5 aborts it before anything is unmasked.
    assert aggregator.min_survivors == EXPECTED
    with pytest.raises(InsufficientSurvivorsError, match="minimum of 5 survivors"):
        aggregator.aggregate(_updates(8), dropouts={0: 0, 1: 2})
    assert aggregator.rounds_done == 0 and aggregator.epsilon_spent == 0.0
    assert aggregator.last_report is not None and aggregator.last_report.result is None


def test_dp_aggregator_refuses_a_round_with_fewer_clients_than_noise_shares(
    accounted: DistributedDPAggregator,
) -> None:
    aggregator = copy.deepcopy(accounted)
    updates = {u: np.zeros(DIMENSION) for u in range(EXPECTED - 1)}
    with pytest.raises(InsufficientSurvivorsError, match="take part"):
        aggregator.aggregate(updates)
    assert aggregator.last_report is None and aggregator.rounds_done == 0


def test_dp_aggregator_masking_abort_is_not_charged(accounted: DistributedDPAggregator) -> None:
    aggregator = copy.deepcopy(accounted)
    with pytest.raises(InsufficientSurvivorsError):
        aggregator.aggregate(_updates(9), dropouts={0: 0, 1: 0, 2: 0})
    assert aggregator.rounds_done == 0


def test_dp_aggregator_rejects_weights(weak: DistributedDPAggregator) -> None:
    aggregator = copy.deepcopy(weak)
    updates = _updates(10)
    with pytest.raises(ParameterError, match="weights"):
        aggregator.aggregate(updates, weights=dict.fromkeys(updates, 1.0))
    assert aggregator.rounds_done == 0


def test_dp_aggregator_rejects_updates_that_do_not_fit(weak: DistributedDPAggregator) -> None:
    aggregator = copy.deepcopy(weak)
    with pytest.raises(ParameterError, match="expects 2000"):
        aggregator.aggregate({0: np.zeros(10), 1: np.zeros(10)})
    too_many = {u: np.zeros(DIMENSION) for u in range(CLIENTS + 1)}
    with pytest.raises(ParameterError, match="max_clients"):
        aggregator.aggregate(too_many)
    with pytest.raises(ParameterError):
        aggregator.aggregate({0: np.full(DIMENSION, np.nan), 1: np.zeros(DIMENSION)})


def test_dp_aggregator_secagg_plus_graph_is_sparse_for_many_clients(
    weak: DistributedDPAggregator,
) -> None:
    graph, threshold = weak.build_graph(list(range(60)))
    assert not graph.is_complete()
    assert 2 <= threshold <= graph.max_degree + 1


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"protocol": "ring"}, "protocol"),
        ({"expected_clients": 0}, "expected_clients"),
        ({"max_clients": 3}, "max_clients"),
        ({"protocol": "secagg+", "dropout_fraction": 0.3, "corrupt_fraction": 0.3}, "below 0.5"),
        ({"sampling_rate": 1.5}, "sampling_rate"),
        ({"target_epsilon": 0.0}, "target_epsilon"),
        ({"clip_norm": -1.0}, "clip_norm"),
    ],
)
def test_dp_aggregator_rejects_bad_parameters(overrides: dict[str, Any], match: str) -> None:
    arguments: dict[str, Any] = {
        "target_epsilon": 1.0,
        "target_delta": DELTA,
        "rounds": 1,
        "sampling_rate": 1.0,
        "expected_clients": EXPECTED,
        "dimension": DIMENSION,
    }
    arguments.update(overrides)
    with pytest.raises(ParameterError, match=match):
        DistributedDPAggregator(**arguments)


def _small_dp(**backend: Any) -> DistributedDPAggregator:
    return DistributedDPAggregator(
        target_epsilon=4.0,
        target_delta=DELTA,
        rounds=1,
        sampling_rate=1.0,
        expected_clients=2,
        dimension=4,
        **backend,
    )


@pytest.mark.parametrize(
    ("backend", "expected"),
    [
        ({"protocol": "complete"}, "secagg"),
        ({"protocol": "harary"}, "secagg+"),
        ({"graph": "complete"}, "secagg"),
        ({"graph": "harary"}, "secagg+"),
        ({"graph": "secagg+"}, "secagg+"),
    ],
    ids=repr,
)
def test_dp_aggregator_old_graph_spellings_still_work_with_one_deprecation_warning(
    backend: dict[str, str], expected: str
) -> None:
    with pytest.warns(DeprecationWarning, match="deprecated") as caught:
        aggregator = _small_dp(**backend)
    assert len(caught) == 1 and caught[0].filename == __file__
    assert aggregator.protocol == aggregator.policy.protocol == expected
    assert aggregator.name == f"dp-{expected}"


@pytest.mark.parametrize("protocol", ["secagg", "secagg+"])
def test_dp_aggregator_backend_names_do_not_warn(protocol: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        aggregator = _small_dp(protocol=protocol)
    assert aggregator.policy.protocol == protocol


def test_dp_aggregator_refuses_the_backend_given_twice_or_a_custom_graph() -> None:
    with pytest.raises(ParameterError, match="once"):
        _small_dp(protocol="secagg+", graph="secagg")
    with pytest.raises(ParameterError, match="custom graph"):
        _small_dp(protocol=lambda ids: None, threat_model="semi-honest")
