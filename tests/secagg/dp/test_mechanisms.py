"""The mechanism: configuration checks and warnings, encode/decode round trips, the noisy sum
through a real masking round, and the wrap-around bound.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

from protocols.graph import complete_graph, secagg_threshold
from protocols.masking import MaskingParams
from protocols.simulate import Simulator
from secagg import dp
from secagg.dp import (
    DistributedDPConfig,
    DistributedDPMechanism,
    DPApproximationWarning,
    DPWrapAroundWarning,
)
from secagg.dp.sampling import UniformSource
from secagg.encoding import ring_dtype
from secagg.errors import ParameterError

Seeded = Callable[[str], UniformSource]


def _config(**overrides: object) -> DistributedDPConfig:
    settings: dict[str, object] = {
        "mechanism": "discrete_gaussian",
        "dimension": 1000,
        "clip_norm": 1.0,
        "expected_clients": 10,
        "modulus_bits": 32,
        "noise_multiplier": 0.0,
        "granularity": 1.0 / 2**16,
    }
    settings.update(overrides)
    return DistributedDPConfig(**settings)  # type: ignore[arg-type]


def _client_updates(
    uniforms: UniformSource, count: int, dimension: int
) -> list[npt.NDArray[np.float64]]:
    """Correlated updates (a shared direction plus a private part), some longer than the clip."""
    shared = uniforms(dimension) - 0.5
    return [(shared + 0.5 * (uniforms(dimension) - 0.5)) * (0.02 + 0.01 * u) for u in range(count)]


@pytest.fixture(scope="module")
def skellam_config(dgauss_config: DistributedDPConfig) -> DistributedDPConfig:
    return DistributedDPConfig(
        mechanism="skellam",
        dimension=dgauss_config.dimension,
        clip_norm=dgauss_config.clip_norm,
        expected_clients=dgauss_config.expected_clients,
        modulus_bits=dgauss_config.modulus_bits,
        noise_multiplier=dgauss_config.noise_multiplier,
        granularity=dgauss_config.granularity,
    )


def test_round_trip_without_noise_is_within_rounding_error() -> None:
    config = _config()
    mechanism = DistributedDPMechanism(config)
    seed = dp.new_rotation_seed()
    update = np.sin(np.arange(1000.0)) * 0.02
    encoded = mechanism.encode(update, seed)
    assert encoded.dtype == np.uint32 and encoded.shape == (1024,)
    decoded = mechanism.decode(encoded, 1, seed)
    # Each rotated coordinate moves by less than one integer unit: L2 error < gamma sqrt(D).
    assert np.linalg.norm(decoded - update) < config.granularity * math.sqrt(1024)


def test_encode_clips_to_the_l2_bound() -> None:
    mechanism = DistributedDPMechanism(_config())
    seed = dp.new_rotation_seed()
    update = np.ones(1000)
    decoded = mechanism.decode(mechanism.encode(update, seed), 1, seed)
    np.testing.assert_allclose(decoded, update / math.sqrt(1000), atol=1e-3)


@pytest.mark.parametrize("mechanism_name", ["discrete_gaussian", "skellam"])
def test_sum_of_encodings_decodes_to_the_noisy_clipped_sum(
    mechanism_name: str,
    dgauss_config: DistributedDPConfig,
    skellam_config: DistributedDPConfig,
    seeded: Seeded,
) -> None:
    config = dgauss_config if mechanism_name == "discrete_gaussian" else skellam_config
    mechanism = DistributedDPMechanism(config)
    seed = dp.new_rotation_seed()
    updates = _client_updates(seeded("sum"), config.expected_clients, config.dimension)
    ring_sum = np.zeros(config.padded_dimension, dtype=np.uint64)
    for update in updates:
        encoded = mechanism.encode(update, seed)
        assert encoded.dtype == ring_dtype(config.modulus_bits)
        ring_sum += encoded
    ring_sum &= np.uint64((1 << config.modulus_bits) - 1)
    decoded = mechanism.decode(ring_sum.astype(config.dtype), len(updates), seed)
    clipped_sum = sum(dp.clip_l2(u, config.clip_norm) for u in updates)
    error = decoded - clipped_sum
    # Per coordinate the error is the central noise (gamma sigma) plus n rounding errors.
    expected_rms = config.granularity * math.sqrt(
        config.central_stddev**2 + config.expected_clients / 4
    )
    assert np.sqrt(np.mean(error**2)) == pytest.approx(expected_rms, rel=0.15)
    assert abs(float(error.mean())) < 6 * expected_rms / math.sqrt(config.dimension)
    # The signal survives: the noise is about z * c per coordinate, the sum is much larger.
    assert np.corrcoef(decoded, clipped_sum)[0, 1] > 0.2


@pytest.mark.parametrize("dropped", [None, 3])
def test_masked_sum_equals_plain_sum_of_noised_updates_bit_for_bit(
    dgauss_config: DistributedDPConfig, dropped: int | None, seeded: Seeded
) -> None:
    config = dgauss_config
    mechanism = DistributedDPMechanism(config)
    seed = dp.new_rotation_seed()
    ids = range(5)
    updates = _client_updates(seeded("masking"), 5, config.dimension)
    encoded = {u: mechanism.encode(updates[u], seed) for u in ids}
    params = MaskingParams(
        session_id=dp.new_rotation_seed(),
        round_id=7,
        graph=complete_graph(ids),
        threshold=secagg_threshold(5),
        vector_length=config.padded_dimension,
        modulus_bits=config.modulus_bits,
    )
    dropouts = {} if dropped is None else {dropped: 2}  # round 2: never uploads its input
    report = Simulator(params, encoded, dropouts=dropouts).run()
    assert report.error is None and report.result is not None
    survivors = [u for u in ids if u != dropped]
    assert list(report.result.survivors) == survivors
    plain = np.zeros(config.padded_dimension, dtype=np.uint64)
    for u in survivors:
        plain += encoded[u]
    plain &= np.uint64((1 << config.modulus_bits) - 1)
    masked = np.asarray(report.result.vector)
    assert masked.dtype == config.dtype
    np.testing.assert_array_equal(masked, plain.astype(config.dtype))
    decoded = mechanism.decode(masked, len(survivors), seed)
    clipped_sum = sum(dp.clip_l2(updates[u], config.clip_norm) for u in survivors)
    rms = float(np.sqrt(np.mean((decoded - clipped_sum) ** 2)))
    assert rms < 2 * config.granularity * config.central_stddev


def test_encode_wraps_negative_values_into_a_wide_ring() -> None:
    config = _config(modulus_bits=48, granularity=1.0 / 2**30)
    mechanism = DistributedDPMechanism(config)
    seed = dp.new_rotation_seed()
    update = -np.abs(np.cos(np.arange(1000.0))) * 0.03
    encoded = mechanism.encode(update, seed)
    assert encoded.dtype == np.uint64
    assert int(encoded.max()) < 2**48
    decoded = mechanism.decode(encoded, 1, seed)
    np.testing.assert_allclose(decoded, update, atol=1e-6)


def test_decode_handles_the_full_64_bit_ring() -> None:
    config = _config(modulus_bits=64, granularity=1.0 / 2**30)
    mechanism = DistributedDPMechanism(config)
    seed = dp.new_rotation_seed()
    update = np.linspace(-0.02, 0.01, 1000)
    decoded = mechanism.decode(mechanism.encode(update, seed), 1, seed)
    np.testing.assert_allclose(decoded, update, atol=1e-6)


def test_decode_rejects_malformed_sums() -> None:
    mechanism = DistributedDPMechanism(_config(modulus_bits=20))
    seed = dp.new_rotation_seed()
    with pytest.raises(ParameterError, match="shape"):
        mechanism.decode(np.zeros(1000, dtype=np.uint32), 1, seed)
    with pytest.raises(ParameterError, match="unsigned"):
        mechanism.decode(np.zeros(1024, dtype=np.int64), 1, seed)
    with pytest.raises(ParameterError, match="outside"):
        mechanism.decode(np.full(1024, 2**20, dtype=np.uint32), 1, seed)
    with pytest.raises(ParameterError, match="num_clients"):
        mechanism.decode(np.zeros(1024, dtype=np.uint32), 0, seed)
    with pytest.raises(ParameterError, match="update has 3 values"):
        mechanism.encode(np.zeros(3), seed)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"mechanism": "laplace"}, "mechanism"),
        ({"clip_norm": 0.0}, "clip_norm"),
        ({"expected_clients": 0}, "expected_clients"),
        ({"modulus_bits": 65}, "modulus_bits"),
        ({"noise_multiplier": -1.0}, "noise_multiplier"),
        ({"granularity": 0.0}, "choose_parameters"),
        ({"granularity": 1e-15}, "exceeds 2\\^40"),
        ({"rounding_beta": 1.0}, "rounding_beta"),
    ],
)
def test_config_rejects_bad_parameters(overrides: dict[str, object], match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        _config(**overrides)


def test_config_warns_when_shares_are_too_small_for_the_gaussian_approximation() -> None:
    with pytest.warns(DPApproximationWarning, match="too small"):
        _config(noise_multiplier=0.5, granularity=0.2, expected_clients=100, modulus_bits=40)


def test_decode_warns_when_more_clients_than_planned_risk_wrap_around(
    dgauss_config: DistributedDPConfig,
) -> None:
    mechanism = DistributedDPMechanism(dgauss_config)
    zeros = np.zeros(dgauss_config.padded_dimension, dtype=dgauss_config.dtype)
    with pytest.warns(DPWrapAroundWarning):
        mechanism.decode(zeros, 50 * dgauss_config.expected_clients, dp.new_rotation_seed())


@pytest.mark.usefixtures("dp_accounting")
def test_wrap_probability_bound_holds_empirically() -> None:
    """Near the limit, the bound is conservative: sums of many clients do not wrap."""
    config = dp.choose_parameters(
        target_epsilon=5.0,
        target_delta=1e-5,
        rounds=1,
        sampling_rate=1.0,
        expected_clients=30,
        dimension=200,
        modulus_bits=16,
        clip_norm=1.0,
        max_wrap_probability=1e-2,
    )
    assert config.wrap_probability <= 1e-2
    mechanism = DistributedDPMechanism(config)
    seed = dp.new_rotation_seed()
    update = np.full(200, 1.0)  # every client pushes the same way: the worst case for the sum
    ring_sum = np.zeros(config.padded_dimension, dtype=np.uint64)
    for _ in range(30):
        ring_sum += mechanism.encode(update, seed)
    ring_sum &= np.uint64((1 << 16) - 1)
    decoded = mechanism.decode(ring_sum.astype(config.dtype), 30, seed)
    expected = 30 * update / math.sqrt(200)
    noise = config.granularity * config.central_stddev
    assert np.max(np.abs(decoded - expected)) < 6 * noise
