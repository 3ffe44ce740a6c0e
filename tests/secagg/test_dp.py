"""Distributed DP: noise samplers against their specification, rotation, rounding, the
mechanism's round trip through a real masking round, and accounting against dp-accounting.

Statistical tests draw from the private seeded seams (AES-CTR under a fixed seed), so they are
deterministic; the bounds are still the ones a fresh CSPRNG draw meets with overwhelming
probability (six standard deviations, or chi-square p-values above 1e-4), and one test per
sampler runs the public CSPRNG path with the same bounds.
"""

from __future__ import annotations

import inspect
import itertools
import math
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from scipy import stats
from scipy.linalg import hadamard

from protocols.graph import complete_graph, secagg_threshold
from protocols.masking import MaskingParams
from protocols.simulate import Simulator
from secagg import dp
from secagg.dp import (
    DistributedDPConfig,
    DistributedDPMechanism,
    DPApproximationWarning,
    DPWrapAroundWarning,
    PrivacyAccountant,
)
from secagg.encoding import ring_dtype
from secagg.errors import ParameterError


def _dp_accounting() -> Any:
    """dp-accounting (the ``dp`` extra); tests that need it are skipped without it."""
    return pytest.importorskip("dp_accounting")


IntArray = npt.NDArray[np.int64]
SAMPLES = 200_000


def _seeded(label: str) -> dp.UniformSource:
    return dp._seeded_uniforms(label.encode())


def _six_sigma(count: int, probability: float, total: int) -> bool:
    """Is ``count`` within six binomial standard deviations of ``total * probability``?"""
    spread = math.sqrt(total * probability * (1.0 - probability))
    return abs(count - total * probability) <= 6.0 * spread + 1.0


def _discrete_gaussian_pmf(sigma: float) -> tuple[IntArray, npt.NDArray[np.float64]]:
    support = np.arange(-math.ceil(40 * sigma) - 1, math.ceil(40 * sigma) + 2)
    weights = np.exp(-(support.astype(np.float64) ** 2) / (2 * sigma**2))
    return support, weights / weights.sum()


def _chi_square_p_value(
    samples: IntArray, support: IntArray, pmf: npt.NDArray[np.float64], min_expected: float = 20.0
) -> float:
    """Chi-square goodness of fit, pooling cells (and both tails) with small expectations."""
    total = samples.shape[0]
    low, high = support[0], support[-1]
    assert samples.min() >= low and samples.max() <= high
    counts = np.bincount(samples - low, minlength=support.shape[0]).astype(np.float64)
    expected = pmf * total
    observed_cells: list[float] = []
    expected_cells: list[float] = []
    pending_observed = pending_expected = 0.0
    for observed, wanted in zip(counts, expected, strict=True):
        pending_observed += observed
        pending_expected += wanted
        if pending_expected >= min_expected:
            observed_cells.append(pending_observed)
            expected_cells.append(pending_expected)
            pending_observed = pending_expected = 0.0
    observed_cells[-1] += pending_observed
    expected_cells[-1] += pending_expected
    statistic = sum((o - e) ** 2 / e for o, e in zip(observed_cells, expected_cells, strict=True))
    return float(stats.chi2.sf(statistic, len(observed_cells) - 1))


# --- discrete Gaussian ------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [0.8, 3.0, 25.0, 1e4])
def test_discrete_gaussian_mean_and_variance_match_spec(sigma: float) -> None:
    samples = dp._sample_discrete_gaussian_from_uniforms(sigma, SAMPLES, _seeded(f"dg{sigma}"))
    if sigma <= 100:
        support, pmf = _discrete_gaussian_pmf(sigma)
        variance = float(np.sum(pmf * support.astype(np.float64) ** 2))
    else:
        variance = sigma**2  # the gap is below exp(-2 pi^2 sigma^2): far under float precision
    assert samples.dtype == np.int64
    assert abs(samples.mean()) <= 6 * math.sqrt(variance / SAMPLES)
    # The sample variance has relative standard deviation about sqrt(2 / N) = 0.32%.
    assert samples.var() == pytest.approx(variance, rel=6 * math.sqrt(2 / SAMPLES))


@pytest.mark.parametrize("sigma", [0.6, 1.5, 4.0, 11.3])
def test_discrete_gaussian_pmf_passes_chi_square(sigma: float) -> None:
    samples = dp._sample_discrete_gaussian_from_uniforms(sigma, SAMPLES, _seeded(f"chi{sigma}"))
    support, pmf = _discrete_gaussian_pmf(sigma)
    assert _chi_square_p_value(samples, support, pmf) > 1e-4


def test_discrete_gaussian_tails_match_spec() -> None:
    sigma, total = 10.0, 400_000
    samples = dp._sample_discrete_gaussian_from_uniforms(sigma, total, _seeded("tails"))
    support, pmf = _discrete_gaussian_pmf(sigma)
    for multiple in (2, 3, 4):
        threshold = multiple * sigma
        exact = float(pmf[np.abs(support) > threshold].sum())
        count = int(np.count_nonzero(np.abs(samples) > threshold))
        assert _six_sigma(count, exact, total), (multiple, count, exact * total)
        # Sub-Gaussian tail of N_Z(0, sigma^2) (Canonne, Kamath, Steinke 2020, Section 5).
        assert exact <= 2 * math.exp(-(threshold**2) / (2 * sigma**2))
    assert np.abs(samples).max() < 7 * sigma


def test_discrete_gaussian_csprng_path_meets_the_same_bounds() -> None:
    sigma = 7.5
    samples = dp.sample_discrete_gaussian(sigma, SAMPLES)
    support, pmf = _discrete_gaussian_pmf(sigma)
    variance = float(np.sum(pmf * support.astype(np.float64) ** 2))
    assert abs(samples.mean()) <= 6 * math.sqrt(variance / SAMPLES)
    assert samples.var() == pytest.approx(variance, rel=6 * math.sqrt(2 / SAMPLES))
    assert _chi_square_p_value(samples, support, pmf) > 1e-6
    assert not np.array_equal(samples[:100], dp.sample_discrete_gaussian(sigma, 100))


def test_discrete_gaussian_zero_sigma_and_empty() -> None:
    assert np.array_equal(dp.sample_discrete_gaussian(0.0, 5), np.zeros(5, dtype=np.int64))
    assert dp.sample_discrete_gaussian(3.0, 0).shape == (0,)


@pytest.mark.parametrize("sigma", [-1.0, math.nan, math.inf, 2.0**47])
def test_discrete_gaussian_rejects_bad_sigma(sigma: float) -> None:
    with pytest.raises(ParameterError, match="sigma"):
        dp.sample_discrete_gaussian(sigma, 10)


def test_samplers_reject_bad_size_types() -> None:
    with pytest.raises(ParameterError, match="size"):
        dp.sample_skellam(1.0, -1)
    with pytest.raises(TypeError, match="size"):
        dp.sample_discrete_gaussian(1.0, True)
    with pytest.raises(TypeError, match="size"):
        dp.sample_skellam(1.0, 2.5)  # type: ignore[arg-type]


# --- Poisson and Skellam ----------------------------------------------------------------------


@pytest.mark.parametrize("mean", [0.3, 2.5, 9.99, 10.0, 37.0, 1000.0])
def test_poisson_pmf_passes_chi_square(mean: float) -> None:
    samples = dp._sample_poisson_from_uniforms(mean, SAMPLES, _seeded(f"poisson{mean}"))
    support = np.arange(0, int(mean + 40 * math.sqrt(mean) + 40))
    pmf = stats.poisson.pmf(support, mean)
    assert samples.min() >= 0
    assert _chi_square_p_value(samples, support, pmf / pmf.sum()) > 1e-4


@pytest.mark.parametrize("mean", [5e4, 1e10, 2.0**47, 2.0**58 + 0.5])
def test_poisson_large_means_keep_mean_and_variance(mean: float) -> None:
    samples = dp._sample_poisson_from_uniforms(mean, SAMPLES, _seeded(f"big{mean}"))
    centred = samples.astype(np.float64) - mean
    assert abs(centred.mean()) <= 6 * math.sqrt(mean / SAMPLES)
    assert centred.var() == pytest.approx(mean, rel=6 * math.sqrt(2 / SAMPLES))


@pytest.mark.parametrize("mu", [0.3, 4.0, 60.0, 1e7])
def test_skellam_mean_zero_variance_two_mu(mu: float) -> None:
    samples = dp._sample_skellam_from_uniforms(mu, SAMPLES, _seeded(f"sk{mu}"))
    assert samples.dtype == np.int64
    assert abs(samples.mean()) <= 6 * math.sqrt(2 * mu / SAMPLES)
    # Excess kurtosis of Sk(mu, mu) is 1 / (2 mu): widen the variance bound accordingly.
    relative = 6 * math.sqrt((2 + 1 / (2 * mu)) / SAMPLES)
    assert samples.var() == pytest.approx(2 * mu, rel=relative)


@pytest.mark.parametrize("mu", [4.0, 60.0])
def test_skellam_pmf_and_tails_match_scipy(mu: float) -> None:
    samples = dp._sample_skellam_from_uniforms(mu, SAMPLES, _seeded(f"skchi{mu}"))
    width = int(40 * math.sqrt(2 * mu)) + 40
    support = np.arange(-width, width + 1)
    pmf = stats.skellam.pmf(support, mu, mu)
    assert _chi_square_p_value(samples, support, pmf / pmf.sum()) > 1e-4
    scale = math.sqrt(2 * mu)
    for multiple in (2, 3):
        exact = float(pmf[np.abs(support) > multiple * scale].sum())
        count = int(np.count_nonzero(np.abs(samples) > multiple * scale))
        assert _six_sigma(count, exact, SAMPLES), (multiple, count, exact * SAMPLES)


def test_skellam_csprng_path_meets_the_same_bounds() -> None:
    mu = 25.0
    samples = dp.sample_skellam(mu, SAMPLES)
    assert abs(samples.mean()) <= 6 * math.sqrt(2 * mu / SAMPLES)
    assert samples.var() == pytest.approx(2 * mu, rel=6 * math.sqrt(2.02 / SAMPLES))
    width = int(40 * math.sqrt(2 * mu)) + 40
    support = np.arange(-width, width + 1)
    pmf = stats.skellam.pmf(support, mu, mu)
    assert _chi_square_p_value(samples, support, pmf / pmf.sum()) > 1e-6


@pytest.mark.parametrize("mu", [-0.5, math.nan, 2.0**61])
def test_skellam_rejects_bad_mu(mu: float) -> None:
    with pytest.raises(ParameterError, match="mu"):
        dp.sample_skellam(mu, 10)


@pytest.mark.parametrize(
    ("sampler", "parameter"),
    [(dp.sample_discrete_gaussian, 3e4), (dp.sample_skellam, 4.5e8), (dp.sample_skellam, 3.0)],
)
def test_samplers_are_fast_for_d_1e5(
    sampler: Callable[[float, int], IntArray], parameter: float
) -> None:
    started = time.perf_counter()
    sampler(parameter, 100_000)
    assert time.perf_counter() - started < 0.5


def test_dp_module_never_uses_a_non_cryptographic_rng() -> None:
    source = inspect.getsource(dp)
    assert "np.random" not in source
    assert "import random" not in source


# --- randomized Hadamard rotation -------------------------------------------------------------


def test_walsh_hadamard_matches_sylvester_matrix() -> None:
    vector = np.arange(16, dtype=np.float64) - 3.5
    expected = hadamard(16) @ vector / 4.0
    np.testing.assert_allclose(dp._walsh_hadamard(vector), expected, atol=1e-12)


def test_rotation_is_orthogonal() -> None:
    seed = dp.new_rotation_seed()
    matrix = np.stack([dp.hadamard_rotate(row, seed) for row in np.eye(64)], axis=1)
    np.testing.assert_allclose(matrix.T @ matrix, np.eye(64), atol=1e-12)
    # Every basis vector is spread perfectly evenly: |entries| = 1 / sqrt(D).
    np.testing.assert_allclose(np.abs(matrix), 1 / 8.0, atol=1e-12)


def test_rotation_pads_and_inverts() -> None:
    seed = dp.new_rotation_seed()
    vector = np.linspace(-2.0, 3.0, 1000)
    rotated = dp.hadamard_rotate(vector, seed)
    assert rotated.shape == (1024,)
    assert np.linalg.norm(rotated) == pytest.approx(np.linalg.norm(vector), rel=1e-12)
    np.testing.assert_allclose(dp.inverse_hadamard_rotate(rotated, seed, 1000), vector, atol=1e-12)


def test_rotation_same_seed_same_rotation_other_seed_other() -> None:
    vector = np.linspace(-1.0, 1.0, 300)
    seed = dp.new_rotation_seed()
    first = dp.hadamard_rotate(vector, seed)
    np.testing.assert_array_equal(first, dp.hadamard_rotate(vector, bytes(seed)))
    other = dp.hadamard_rotate(vector, dp.new_rotation_seed())
    assert not np.allclose(first, other)
    # Undoing with the wrong seed does not give the vector back.
    assert not np.allclose(dp.inverse_hadamard_rotate(first, dp.new_rotation_seed(), 300), vector)


@pytest.mark.parametrize(
    ("dimension", "padded"), [(1, 1), (2, 2), (3, 4), (1024, 1024), (1025, 2048)]
)
def test_padded_dimension_is_next_power_of_two(dimension: int, padded: int) -> None:
    assert dp.padded_dimension(dimension) == padded


def test_rotation_rejects_bad_seed_and_length() -> None:
    with pytest.raises(ParameterError, match="rotation_seed"):
        dp.hadamard_rotate(np.ones(4), b"short")
    with pytest.raises(ParameterError, match="power-of-two"):
        dp.inverse_hadamard_rotate(np.ones(6), dp.new_rotation_seed(), 6)
    with pytest.raises(ParameterError, match="dimension"):
        dp.inverse_hadamard_rotate(np.ones(8), dp.new_rotation_seed(), 9)


# --- clipping and conditional rounding --------------------------------------------------------


def test_clip_l2_scales_long_vectors_only() -> None:
    long = np.full(4, 3.0)
    np.testing.assert_allclose(np.linalg.norm(dp.clip_l2(long, 2.0)), 2.0)
    short = np.array([0.1, -0.2])
    np.testing.assert_array_equal(dp.clip_l2(short, 2.0), short)


def test_conditional_rounding_respects_the_norm_bound() -> None:
    dimension, scaled_norm = 256, 40.0
    vector = np.linspace(-1.0, 1.0, dimension) + 0.37
    vector *= scaled_norm / np.linalg.norm(vector)
    bound = dp.rounded_l2_bound(scaled_norm, dimension, dp.DEFAULT_ROUNDING_BETA)
    assert scaled_norm < bound < scaled_norm + math.sqrt(dimension)
    uniforms = _seeded("rounding")
    total = np.zeros(dimension)
    trials = 400
    for _ in range(trials):
        rounded = dp._conditional_round_from_uniforms(vector, bound, uniforms)
        assert np.linalg.norm(rounded) <= bound
        assert np.all((rounded == np.floor(vector)) | (rounded == np.floor(vector) + 1))
        total += rounded
    # Nearly unbiased (the conditioning bias is small; Kairouz et al. 2021, Section 4.1).
    assert np.max(np.abs(total / trials - vector)) < 0.15


def test_conditional_rounding_refuses_an_unreachable_bound() -> None:
    with pytest.raises(ParameterError, match="clip the input"):
        dp.conditional_round(np.full(16, 2.5), 1.0)


def test_rounded_l2_bound_deterministic_when_beta_is_zero() -> None:
    assert dp.rounded_l2_bound(10.0, 64, 0.0) == pytest.approx(18.0)
    assert dp.rounded_l2_bound(10.0, 64, 0.5) < 18.0


# --- the mechanism ----------------------------------------------------------------------------


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


def _client_updates(count: int, dimension: int, label: str) -> list[npt.NDArray[np.float64]]:
    """Correlated updates (a shared direction plus a private part), some longer than the clip."""
    uniforms = _seeded(label)
    shared = uniforms(dimension) - 0.5
    return [(shared + 0.5 * (uniforms(dimension) - 0.5)) * (0.02 + 0.01 * u) for u in range(count)]


@pytest.fixture(scope="module")
def dgauss_config() -> DistributedDPConfig:
    _dp_accounting()
    return dp.choose_parameters(
        target_epsilon=3.0,
        target_delta=1e-5,
        rounds=50,
        sampling_rate=0.05,
        expected_clients=20,
        dimension=500,
        modulus_bits=32,
        clip_norm=0.3,
    )


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
    mechanism_name: str, dgauss_config: DistributedDPConfig, skellam_config: DistributedDPConfig
) -> None:
    config = dgauss_config if mechanism_name == "discrete_gaussian" else skellam_config
    mechanism = DistributedDPMechanism(config)
    seed = dp.new_rotation_seed()
    updates = _client_updates(config.expected_clients, config.dimension, "sum")
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
    dgauss_config: DistributedDPConfig, dropped: int | None
) -> None:
    config = dgauss_config
    mechanism = DistributedDPMechanism(config)
    seed = dp.new_rotation_seed()
    ids = range(5)
    updates = _client_updates(5, config.dimension, "masking")
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


# --- accounting -------------------------------------------------------------------------------


def _library_epsilon(
    accountant: object, noise_multiplier: float, sampling_rate: float, rounds: int, delta: float
) -> float:
    library = _dp_accounting()
    event = library.SelfComposedDpEvent(
        library.PoissonSampledDpEvent(sampling_rate, library.GaussianDpEvent(noise_multiplier)),
        rounds,
    )
    return float(accountant.compose(event).get_epsilon(delta))  # type: ignore[attr-defined]


def test_privacy_report_matches_dp_accounting_rdp() -> None:
    accountant = PrivacyAccountant(noise_multiplier=1.1, sampling_rate=0.01, delta=1e-5)
    report = accountant.privacy_report(1000)
    expected = _library_epsilon(_dp_accounting().rdp.RdpAccountant(), 1.1, 0.01, 1000, 1e-5)
    assert report["epsilon"] == expected
    assert report["accountant"] == "RdpAccountant"
    assert report["delta"] == 1e-5 and report["rounds"] == 1000
    assert isinstance(report["rdp_order"], float)


def test_privacy_report_matches_dp_accounting_pld() -> None:
    accountant = PrivacyAccountant(
        noise_multiplier=1.0, sampling_rate=0.1, delta=1e-5, accountant="pld"
    )
    expected = _library_epsilon(_dp_accounting().pld.PLDAccountant(), 1.0, 0.1, 20, 1e-5)
    assert accountant.epsilon_after(20) == expected
    # PLD is tighter than RDP for the same mechanism.
    rdp = PrivacyAccountant(noise_multiplier=1.0, sampling_rate=0.1, delta=1e-5)
    assert expected < rdp.epsilon_after(20)


def test_epsilon_grows_with_rounds_and_starts_at_zero() -> None:
    _dp_accounting()
    accountant = PrivacyAccountant(noise_multiplier=0.9, sampling_rate=0.02, delta=1e-6)
    epsilons = [accountant.epsilon_after(r) for r in (0, 1, 10, 100, 1000)]
    assert epsilons[0] == 0.0
    assert all(a < b for a, b in itertools.pairwise(epsilons))
    assert (
        PrivacyAccountant(noise_multiplier=0.0, sampling_rate=1.0, delta=1e-5).epsilon_after(1)
        == math.inf
    )


def test_chosen_noise_achieves_the_target_epsilon(dgauss_config: DistributedDPConfig) -> None:
    accountant = PrivacyAccountant.for_config(dgauss_config, sampling_rate=0.05, delta=1e-5)
    epsilon = accountant.epsilon_after(50)
    assert 3.0 * 0.995 <= epsilon <= 3.0
    assert dgauss_config.wrap_probability <= dp.DEFAULT_MAX_WRAP_PROBABILITY
    assert dgauss_config.noise_inflation == pytest.approx(1.0, abs=1e-3)
    assert dgauss_config.discretization_gap < 1e-6
    report = dgauss_config.to_dict()
    assert report["noise_multiplier"] == dgauss_config.noise_multiplier


def test_choose_parameters_warns_about_wrap_around_for_a_small_ring() -> None:
    _dp_accounting()
    with pytest.warns(DPWrapAroundWarning, match="increase modulus_bits to at least") as caught:
        config = dp.choose_parameters(
            target_epsilon=1.0,
            target_delta=1e-5,
            rounds=20,
            sampling_rate=0.1,
            expected_clients=100,
            dimension=10_000,
            modulus_bits=12,
            clip_norm=1.0,
        )
    assert config.wrap_probability > dp.DEFAULT_MAX_WRAP_PROBABILITY
    suggested = int(str(caught[0].message).split("at least ")[1].split()[0])
    assert suggested > 12
    with warnings.catch_warnings():
        warnings.simplefilter("error", DPWrapAroundWarning)
        wider = DistributedDPConfig(
            mechanism="discrete_gaussian",
            dimension=10_000,
            clip_norm=1.0,
            expected_clients=100,
            modulus_bits=suggested,
            noise_multiplier=config.noise_multiplier,
            granularity=config.granularity,
        )
    assert wider.wrap_probability <= dp.DEFAULT_MAX_WRAP_PROBABILITY


@pytest.mark.parametrize("mechanism_name", ["discrete_gaussian", "skellam"])
def test_wide_rings_keep_noise_shares_inside_the_sampler_range(mechanism_name: str) -> None:
    _dp_accounting()
    config = dp.choose_parameters(
        target_epsilon=2.0,
        target_delta=1e-6,
        rounds=1,
        sampling_rate=1.0,
        expected_clients=3,
        dimension=1000,
        modulus_bits=64,
        clip_norm=1.0,
        mechanism=mechanism_name,  # type: ignore[arg-type]
    )
    assert config.local_stddev <= dp.MAX_SIGMA
    assert config.local_skellam_mu <= dp.MAX_POISSON_MEAN or mechanism_name != "skellam"
    assert config.noise_inflation == pytest.approx(1.0, abs=1e-6)
    mechanism = DistributedDPMechanism(config)
    seed = dp.new_rotation_seed()
    update = np.full(1000, 0.01)
    decoded = mechanism.decode(mechanism.encode(update, seed), 1, seed)
    noise = config.granularity * config.local_stddev
    assert np.sqrt(np.mean((decoded - update) ** 2)) == pytest.approx(noise, rel=0.15)


def test_decode_warns_when_more_clients_than_planned_risk_wrap_around(
    dgauss_config: DistributedDPConfig,
) -> None:
    mechanism = DistributedDPMechanism(dgauss_config)
    zeros = np.zeros(dgauss_config.padded_dimension, dtype=dgauss_config.dtype)
    with pytest.warns(DPWrapAroundWarning):
        mechanism.decode(zeros, 50 * dgauss_config.expected_clients, dp.new_rotation_seed())


def test_wrap_probability_bound_holds_empirically() -> None:
    """Near the limit, the bound is conservative: sums of many clients do not wrap."""
    _dp_accounting()
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


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"target_epsilon": 0.0}, "target_epsilon"),
        ({"target_delta": 1.0}, "target_delta"),
        ({"rounds": 0}, "rounds"),
        ({"sampling_rate": 1.5}, "sampling_rate"),
        ({"mechanism": "gauss"}, "mechanism"),
        ({"accountant": "moments"}, "accountant"),
    ],
)
def test_choose_parameters_rejects_bad_targets(overrides: dict[str, object], match: str) -> None:
    arguments: dict[str, object] = {
        "target_epsilon": 1.0,
        "target_delta": 1e-5,
        "rounds": 10,
        "sampling_rate": 0.1,
        "expected_clients": 10,
        "dimension": 100,
        "modulus_bits": 32,
        "clip_norm": 1.0,
    }
    arguments.update(overrides)
    with pytest.raises(ParameterError, match=match):
        dp.choose_parameters(**arguments)  # type: ignore[arg-type]
