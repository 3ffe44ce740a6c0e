"""Noise samplers of distributed DP: discrete Gaussian, Poisson and Skellam, from AES-CTR.

Each client draws its share of the round's noise here, so this module holds the only randomness
the privacy guarantee rests on. Rules:

* All randomness comes from AES-128-CTR keyed by :mod:`secrets` (the same expansion as the
  masks); never from ``random`` or a numpy generator.
* Each public sampler is a thin wrapper over a private ``_..._from_uniforms`` seam that takes a
  uniform source, so that tests can be deterministic (:func:`_seeded_uniforms`); production
  paths always draw a fresh key.
* The samplers are exact up to float64 rounding of their probabilities; :data:`MAX_SIGMA` and
  :data:`MAX_POISSON_MEAN` are the limits beyond which float64 would lose that exactness.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Callable
from typing import Final

import numpy as np
import numpy.typing as npt

from secagg.dp._checks import FloatArray, _check_int, _check_real
from secagg.hazmat.prg import MASK_KEY_BYTES, expand_mask

__all__ = [
    "MAX_POISSON_MEAN",
    "MAX_SIGMA",
    "sample_discrete_gaussian",
    "sample_poisson",
    "sample_skellam",
]

IntArray = npt.NDArray[np.int64]
#: ``uniforms(count)`` returns ``count`` independent uniform floats in the open interval (0, 1).
UniformSource = Callable[[int], FloatArray]
#: Floating-point limits of the samplers: beyond these, float64 arithmetic loses exactness.
MAX_SIGMA: Final = float(2**46)
MAX_POISSON_MEAN: Final = float(2**60)
#: Small Poisson means are sampled by inversion, which this many steps always finish (for
#: lambda < 10 the probability of a larger value is below 1e-60).
_POISSON_INVERSION_LIMIT: Final = 10.0
_POISSON_INVERSION_STEPS: Final = 128
_LOG_FACTORIAL_TABLE_SIZE: Final = 256
_LOG_FACTORIALS: Final = np.array(
    [math.lgamma(k + 1.0) for k in range(_LOG_FACTORIAL_TABLE_SIZE)], dtype=np.float64
)


def _words_to_open_unit(words: npt.NDArray[np.uint64]) -> FloatArray:
    """Map uint64 words to floats on the grid (j + 1/2) / 2^52, strictly inside (0, 1)."""
    top = (words >> np.uint64(12)).astype(np.float64)
    return (top + 0.5) * (1.0 / 2**52)


def _csprng_uniforms(count: int) -> FloatArray:
    """``count`` uniforms in (0, 1) from AES-128-CTR under a fresh :mod:`secrets` key."""
    words = expand_mask(secrets.token_bytes(MASK_KEY_BYTES), count, np.uint64)
    return _words_to_open_unit(words.astype(np.uint64, copy=False))


def _seeded_uniforms(seed: bytes) -> UniformSource:
    """A deterministic uniform source for tests: AES-CTR under SHA-256(seed || call index).

    Only test vectors use this seam; production paths always draw a fresh :mod:`secrets` key.
    """
    calls = [0]

    def uniforms(count: int) -> FloatArray:
        index = calls[0]
        calls[0] += 1
        key = hashlib.sha256(seed + index.to_bytes(8, "little")).digest()[:MASK_KEY_BYTES]
        words = expand_mask(key, count, np.uint64)
        return _words_to_open_unit(words.astype(np.uint64, copy=False))

    return uniforms


def sample_discrete_gaussian(sigma: float, size: int) -> IntArray:
    """Draw ``size`` independent samples of the discrete Gaussian N_Z(0, sigma^2).

    The distribution puts mass proportional to exp(-x^2 / (2 sigma^2)) on every integer x. The
    sampler is Algorithm 3 of Canonne, Kamath, Steinke, "The Discrete Gaussian for Differential
    Privacy" (NeurIPS 2020): discrete Laplace proposals of scale t = floor(sigma) + 1 accepted
    with probability exp(-(|Y| - sigma^2 / t)^2 / (2 sigma^2)), vectorised in batches. The
    algorithm is exact; this implementation evaluates the logarithms and the acceptance
    probability in float64 on uniforms with 52-bit resolution, so each step's probabilities are
    exact up to a relative error of about 2^-50 (not the rational arithmetic of the paper).

    Args:
        sigma: the scale parameter, in [0, 2^46] (samples stay below 2^52, where float64
            still holds every integer); 0 gives zeros.
        size: number of samples.

    Returns:
        An int64 array of ``size`` samples.

    Raises:
        ParameterError: ``sigma`` or ``size`` out of range.
    """
    return _sample_discrete_gaussian_from_uniforms(sigma, size, _csprng_uniforms)


def _sample_discrete_gaussian_from_uniforms(
    sigma: float, size: int, uniforms: UniformSource
) -> IntArray:
    sigma = _check_real("sigma", sigma, low=0.0, high=MAX_SIGMA)
    size = _check_int("size", size, 0)
    out = np.zeros(size, dtype=np.int64)
    if sigma == 0.0 or size == 0:
        return out
    scale = math.floor(sigma) + 1.0
    shift = sigma * sigma / scale
    filled = 0
    while filled < size:
        # Between 45% (sigma near 0.3) and 76% (large sigma) of the proposals are accepted;
        # twice the shortfall plus a margin makes one batch nearly always enough.
        batch = 2 * (size - filled) + 64
        draws = uniforms(3 * batch)
        proposals = _discrete_laplace(scale, draws[:batch], draws[batch : 2 * batch])
        distance = np.abs(proposals) - shift
        accept = draws[2 * batch :] < np.exp(-(distance * distance) / (2.0 * sigma * sigma))
        accepted = proposals[accept][: size - filled]
        out[filled : filled + accepted.shape[0]] = accepted
        filled += accepted.shape[0]
    return out


def _discrete_laplace(scale: float, first: FloatArray, second: FloatArray) -> FloatArray:
    """Discrete Laplace of ``scale`` t (mass proportional to exp(-|y| / t)) by inversion.

    The difference of two independent geometric variables with P(G >= g) = exp(-g / t) is
    discrete Laplace; each geometric is floor(-t * log(U)) for U uniform in (0, 1).
    """
    return np.floor(-scale * np.log(first)) - np.floor(-scale * np.log(second))


def sample_poisson(mean: float, size: int) -> IntArray:
    """Draw ``size`` independent Poisson(``mean``) samples from the CSPRNG.

    Means below 10 use sequential inversion (truncated after 128 steps, which a Poisson variable
    of mean below 10 exceeds with probability below 1e-60); larger means use Hormann's
    transformed rejection with squeeze (PTRS; W. Hormann, "The transformed rejection method for
    generating Poisson random variables", Insurance: Mathematics and Economics, 1993), the
    algorithm numpy uses, vectorised in batches. The acceptance test evaluates log(mean^k e^-mean
    / k!) with a cancellation-free Stirling expansion, so both branches are exact up to float64
    rounding of the probabilities.

    Args:
        mean: lambda, in [0, 2^60].
        size: number of samples.

    Returns:
        An int64 array of ``size`` non-negative samples.

    Raises:
        ParameterError: ``mean`` or ``size`` out of range.
    """
    return _sample_poisson_from_uniforms(mean, size, _csprng_uniforms)


def _check_poisson_arguments(name: str, mean: float, size: int) -> tuple[float, int]:
    """Check a Poisson mean (called ``name`` in the error) and a sample count, in that order."""
    return _check_real(name, mean, low=0.0, high=MAX_POISSON_MEAN), _check_int("size", size, 0)


def _sample_poisson_from_uniforms(mean: float, size: int, uniforms: UniformSource) -> IntArray:
    mean, size = _check_poisson_arguments("mean", mean, size)
    if mean == 0.0 or size == 0:
        return np.zeros(size, dtype=np.int64)
    if mean < _POISSON_INVERSION_LIMIT:
        return _poisson_by_inversion(mean, uniforms(size))
    return _poisson_ptrs(mean, size, uniforms)


def _poisson_by_inversion(mean: float, draws: FloatArray) -> IntArray:
    result = np.zeros(draws.shape[0], dtype=np.int64)
    mass = math.exp(-mean)
    cumulative = mass
    pending = draws > cumulative
    for k in range(1, _POISSON_INVERSION_STEPS):
        if not pending.any():
            break
        result[pending] = k
        mass *= mean / k
        cumulative += mass
        pending &= draws > cumulative
    return result


def _log_poisson_pmf(k: IntArray, excess: FloatArray, mean: float) -> FloatArray:
    """log(mean^k e^-mean / k!) for integers k >= 0 given with ``excess`` = k - mean.

    For k >= 256 the Stirling series is written around the mean,
    -k log1p(excess / mean) + excess - log(2 pi k) / 2 - series(k), which avoids cancelling
    k log(mean) against log(k!) and stays accurate for means up to 2^60. ``excess`` is passed
    separately because k - mean computed in float64 would lose the low bits for huge means.
    """
    small = k < _LOG_FACTORIAL_TABLE_SIZE
    small_k = np.where(small, k, 0)
    direct = -mean + small_k * math.log(mean) - _LOG_FACTORIALS[small_k]
    large_k = np.where(small, _LOG_FACTORIAL_TABLE_SIZE, k).astype(np.float64)
    large_excess = np.where(small, large_k - mean, excess)
    inverse = 1.0 / large_k
    series = inverse * (1.0 / 12 - inverse**2 * (1.0 / 360 - inverse**2 / 1260))
    stirling = (
        -large_k * np.log1p(large_excess / mean)
        + large_excess
        - 0.5 * np.log(2.0 * math.pi * large_k)
        - series
    )
    return np.where(small, direct, stirling)


def _poisson_ptrs(mean: float, size: int, uniforms: UniformSource) -> IntArray:
    """Hormann 1993, PTRS, for mean >= 10 (constants as in the paper and numpy).

    The candidate k = floor((2a / us + b) u + mean + 0.43) is formed as floor(mean) plus a float
    offset of order sqrt(mean), so that no low bits are lost for huge means.
    """
    root = math.sqrt(mean)
    b = 0.931 + 2.53 * root
    a = -0.059 + 0.02483 * b
    log_inverse_alpha = math.log(1.1239 + 1.1328 / (b - 3.4))
    squeeze = 0.9277 - 3.6224 / (b - 2.0)
    base = math.floor(mean)
    fraction = mean - base
    # Offsets beyond this are rejected anyway; the clip keeps base + offset inside int64.
    limit = float(2**61)
    out = np.zeros(size, dtype=np.int64)
    filled = 0
    while filled < size:
        batch = (size - filled) + (size - filled) // 4 + 64
        draws = uniforms(2 * batch)
        u = draws[:batch] - 0.5
        v = draws[batch:]
        us = 0.5 - np.abs(u)
        offset = np.clip(np.floor((2.0 * a / us + b) * u + fraction + 0.43), -limit, limit)
        k = base + offset.astype(np.int64)
        accept = (us >= 0.07) & (v <= squeeze)
        # The squeeze failed: test the candidates that are not rejected outright exactly.
        test = ~accept & (k >= 0) & ~((us < 0.013) & (v > us))
        log_ratio = np.log(v[test]) + log_inverse_alpha - np.log(a / (us[test] ** 2) + b)
        accept[test] = log_ratio <= _log_poisson_pmf(k[test], offset[test] - fraction, mean)
        accepted = k[accept][: size - filled]
        out[filled : filled + accepted.shape[0]] = accepted
        filled += accepted.shape[0]
    return out


def sample_skellam(mu: float, size: int) -> IntArray:
    """Draw ``size`` samples of the symmetric Skellam distribution Sk(mu, mu).

    Sk(mu, mu) is the difference of two independent Poisson(mu) variables: mean 0, variance
    2 mu, and closed under summation (the sum of n shares Sk(mu, mu) is Sk(n mu, n mu)), which is
    what makes it a distributed mechanism (Agarwal, Kairouz, Liu 2021, Section 3). Exact up to
    float64 rounding, as :func:`sample_poisson`.

    Args:
        mu: the Poisson mean of each half, in [0, 2^60].
        size: number of samples.

    Returns:
        An int64 array of ``size`` samples, symmetric around zero.

    Raises:
        ParameterError: ``mu`` or ``size`` out of range.
    """
    return _sample_skellam_from_uniforms(mu, size, _csprng_uniforms)


def _sample_skellam_from_uniforms(mu: float, size: int, uniforms: UniformSource) -> IntArray:
    # Checked here as well as in the Poisson sampler so that the error names ``mu``.
    mu, size = _check_poisson_arguments("mu", mu, size)
    positive = _sample_poisson_from_uniforms(mu, size, uniforms)
    return positive - _sample_poisson_from_uniforms(mu, size, uniforms)
