"""Noise samplers against their specification: moments, chi-square fits, tails and limits.

Statistical tests draw from the private seeded seams (AES-CTR under a fixed seed), so they are
deterministic; the bounds are still the ones a fresh CSPRNG draw meets with overwhelming
probability (six standard deviations, or chi-square p-values above 1e-4), and one test per
sampler runs the public CSPRNG path with the same bounds.
"""

from __future__ import annotations

import importlib
import inspect
import math
import pkgutil
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest
from scipy import stats

from secagg import dp
from secagg.dp import sampling
from secagg.dp.sampling import UniformSource
from secagg.errors import ParameterError

IntArray = npt.NDArray[np.int64]
Seeded = Callable[[str], UniformSource]
SAMPLES = 200_000


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


@pytest.mark.parametrize("sigma", [0.8, 3.0, 25.0, 1e4])
def test_discrete_gaussian_mean_and_variance_match_spec(seeded: Seeded, sigma: float) -> None:
    samples = sampling._sample_discrete_gaussian_from_uniforms(sigma, SAMPLES, seeded(f"dg{sigma}"))
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
def test_discrete_gaussian_pmf_passes_chi_square(seeded: Seeded, sigma: float) -> None:
    samples = sampling._sample_discrete_gaussian_from_uniforms(
        sigma, SAMPLES, seeded(f"chi{sigma}")
    )
    support, pmf = _discrete_gaussian_pmf(sigma)
    assert _chi_square_p_value(samples, support, pmf) > 1e-4


def test_discrete_gaussian_tails_match_spec(seeded: Seeded) -> None:
    sigma, total = 10.0, 400_000
    samples = sampling._sample_discrete_gaussian_from_uniforms(sigma, total, seeded("tails"))
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


@pytest.mark.parametrize("mean", [0.3, 2.5, 9.99, 10.0, 37.0, 1000.0])
def test_poisson_pmf_passes_chi_square(seeded: Seeded, mean: float) -> None:
    samples = sampling._sample_poisson_from_uniforms(mean, SAMPLES, seeded(f"poisson{mean}"))
    support = np.arange(0, int(mean + 40 * math.sqrt(mean) + 40))
    pmf = stats.poisson.pmf(support, mean)
    assert samples.min() >= 0
    assert _chi_square_p_value(samples, support, pmf / pmf.sum()) > 1e-4


@pytest.mark.parametrize("mean", [5e4, 1e10, 2.0**47, 2.0**58 + 0.5])
def test_poisson_large_means_keep_mean_and_variance(seeded: Seeded, mean: float) -> None:
    samples = sampling._sample_poisson_from_uniforms(mean, SAMPLES, seeded(f"big{mean}"))
    centred = samples.astype(np.float64) - mean
    assert abs(centred.mean()) <= 6 * math.sqrt(mean / SAMPLES)
    assert centred.var() == pytest.approx(mean, rel=6 * math.sqrt(2 / SAMPLES))


@pytest.mark.parametrize("mu", [0.3, 4.0, 60.0, 1e7])
def test_skellam_mean_zero_variance_two_mu(seeded: Seeded, mu: float) -> None:
    samples = sampling._sample_skellam_from_uniforms(mu, SAMPLES, seeded(f"sk{mu}"))
    assert samples.dtype == np.int64
    assert abs(samples.mean()) <= 6 * math.sqrt(2 * mu / SAMPLES)
    # Excess kurtosis of Sk(mu, mu) is 1 / (2 mu): widen the variance bound accordingly.
    relative = 6 * math.sqrt((2 + 1 / (2 * mu)) / SAMPLES)
    assert samples.var() == pytest.approx(2 * mu, rel=relative)


@pytest.mark.parametrize("mu", [4.0, 60.0])
def test_skellam_pmf_and_tails_match_scipy(seeded: Seeded, mu: float) -> None:
    samples = sampling._sample_skellam_from_uniforms(mu, SAMPLES, seeded(f"skchi{mu}"))
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
    names = [dp.__name__] + [
        f"{dp.__name__}.{module.name}" for module in pkgutil.iter_modules(dp.__path__)
    ]
    assert f"{dp.__name__}.sampling" in names
    for name in names:
        source = inspect.getsource(importlib.import_module(name))
        assert "np.random" not in source, name
        assert "import random" not in source, name
