"""Distributed differential privacy on top of the modular sum, with library accounting.

Secure aggregation hides each update from the server, but the sum itself can still leak about
one client. This module adds client-level differential privacy in the *distributed* form that
composes with a sum in Z_{2^k}: every client adds a small share of discrete noise before masking,
so the noise is in the sum before anyone sees it and no party ever sees un-noised data.

Two mechanisms, both following TFF's ``distributed_dp.py`` pipeline:

* the distributed discrete Gaussian (Kairouz, Liu, Steinke, "The Distributed Discrete Gaussian
  Mechanism for Federated Learning with Secure Aggregation", ICML 2021), and
* the Skellam mechanism (Agarwal, Kairouz, Liu, "The Skellam Mechanism for Differentially Private
  Federated Learning", NeurIPS 2021).

Client side (:meth:`DistributedDPMechanism.encode`): clip the update to L2 norm ``clip_norm``,
pad to a power of two and apply a randomized Hadamard rotation from a shared seed (it spreads
the norm evenly so that no coordinate is large), scale by 1 / ``granularity`` (gamma), round
every coordinate stochastically and retry until the rounded norm is below the bound of
Kairouz et al. 2021 (conditional randomized rounding), add this client's noise share, and
wrap into the ring. Server side (:meth:`DistributedDPMechanism.decode`): read the modular sum as
centred signed integers, multiply by gamma, rotate back and drop the padding.

Rules of this module:

* All randomness comes from AES-CTR keyed by :mod:`secrets` (the same expansion as the masks);
  never from ``random`` or a numpy generator. The private ``_..._from_uniforms`` seams take a
  uniform source so that tests can be deterministic.
* Privacy accounting is done by Google's ``dp-accounting`` library (:class:`PrivacyAccountant`),
  never by hand-written formulas here; the library is imported lazily (the ``dp`` extra), so the
  samplers and the rotation work without it.
* Parameters are checked at construction with named helpers and actionable messages
  (:class:`~secagg.errors.ParameterError`), as TFF's ``distributed_dp.py`` does.
"""

from __future__ import annotations

import hashlib
import importlib
import math
import secrets
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, Protocol, cast

import numpy as np
import numpy.typing as npt

from secagg.encoding import ring_dtype
from secagg.errors import ParameterError
from secagg.hazmat.prg import MASK_KEY_BYTES, expand_mask

if TYPE_CHECKING:
    from types import ModuleType

__all__ = [
    "DEFAULT_MAX_WRAP_PROBABILITY",
    "DEFAULT_ROUNDING_BETA",
    "MAX_POISSON_MEAN",
    "MAX_SIGMA",
    "ROTATION_SEED_BYTES",
    "AccountantKind",
    "DPApproximationWarning",
    "DPWrapAroundWarning",
    "DistributedDPConfig",
    "DistributedDPMechanism",
    "Mechanism",
    "PrivacyAccountant",
    "choose_parameters",
    "clip_l2",
    "conditional_round",
    "hadamard_rotate",
    "inverse_hadamard_rotate",
    "new_rotation_seed",
    "padded_dimension",
    "rounded_l2_bound",
    "sample_discrete_gaussian",
    "sample_poisson",
    "sample_skellam",
    "wrap_probability",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
RingArray = npt.NDArray[np.unsignedinteger]
#: ``uniforms(count)`` returns ``count`` independent uniform floats in the open interval (0, 1).
UniformSource = Callable[[int], FloatArray]
Mechanism = Literal["discrete_gaussian", "skellam"]
AccountantKind = Literal["rdp", "pld"]

#: Length of the shared seed of the randomized Hadamard rotation (one AES-128 key).
ROTATION_SEED_BYTES: Final = MASK_KEY_BYTES
#: Failure probability beta of one conditional-rounding attempt's norm bound; TFF's default.
DEFAULT_ROUNDING_BETA: Final = math.exp(-0.5)
#: Largest acceptable probability that some coordinate of the sum wraps around the ring.
DEFAULT_MAX_WRAP_PROBABILITY: Final = 1e-4
#: Floating-point limits of the samplers: beyond these, float64 arithmetic loses exactness.
MAX_SIGMA: Final = float(2**46)
MAX_POISSON_MEAN: Final = float(2**60)
#: The scaled clip norm c / gamma is kept below 2^40: a finer grid gains no accuracy.
_MAX_SCALED_NORM: Final = float(2**40)
_MAX_ROUNDING_ATTEMPTS: Final = 1000
#: Small Poisson means are sampled by inversion, which this many steps always finish (for
#: lambda < 10 the probability of a larger value is below 1e-60).
_POISSON_INVERSION_LIMIT: Final = 10.0
_POISSON_INVERSION_STEPS: Final = 128
_LOG_FACTORIAL_TABLE_SIZE: Final = 256
_LOG_FACTORIALS: Final = np.array(
    [math.lgamma(k + 1.0) for k in range(_LOG_FACTORIAL_TABLE_SIZE)], dtype=np.float64
)
_MECHANISMS: Final = ("discrete_gaussian", "skellam")
_ACCOUNTANTS: Final = ("rdp", "pld")


class DPWrapAroundWarning(UserWarning):
    """The noised sum may wrap around the ring with probability above the configured limit.

    A wrapped coordinate of the rotated sum is off by 2^k * gamma, and the inverse rotation
    spreads that error over every decoded coordinate: the round's result is garbage. Increase
    ``modulus_bits`` (the message names the smallest that works).
    """


class DPApproximationWarning(UserWarning):
    """The Gaussian approximation used for accounting is not tight for these parameters.

    The accountant treats the sum of the discrete noise shares as a continuous Gaussian of the
    same variance; Kairouz et al. 2021 (Theorem 1) bound the gap by a term that is negligible
    only when every client's noise share has a standard deviation of a few integer units.
    """


# -- argument checks (TFF distributed_dp.py style) ---------------------------------------------


def _check_type(name: str, value: object, expected: type | tuple[type, ...]) -> None:
    if isinstance(value, bool) or not isinstance(value, expected):
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__}")


def _check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    _check_type(name, value, (int, np.integer))
    checked = int(cast("int", value))
    if checked < low or (high is not None and checked > high):
        upper = "" if high is None else f", {high}"
        raise ParameterError(f"{name} must be in [{low}{upper}], got {checked}")
    return checked


def _check_real(
    name: str,
    value: object,
    *,
    low: float,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
    fix: str = "",
) -> float:
    _check_type(name, value, (int, float, np.integer, np.floating))
    checked = float(cast("float", value))
    too_low = checked <= low if low_open else checked < low
    too_high = checked >= high if high_open else checked > high
    if not math.isfinite(checked) or too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        hint = f"; {fix}" if fix else ""
        raise ParameterError(f"{name} must be in {left}{low}, {high}{right}, got {value}{hint}")
    return checked


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ParameterError(f"{name} must be one of {choices}, got {value!r}")
    return str(value)


def _check_mechanism(value: object) -> Mechanism:
    return cast(Mechanism, _check_choice("mechanism", value, _MECHANISMS))


def _check_accountant(value: object) -> AccountantKind:
    return cast(AccountantKind, _check_choice("accountant", value, _ACCOUNTANTS))


def _check_seed(rotation_seed: object) -> bytes:
    if not isinstance(rotation_seed, bytes | bytearray) or len(rotation_seed) != (
        ROTATION_SEED_BYTES
    ):
        raise ParameterError(
            f"rotation_seed must be {ROTATION_SEED_BYTES} bytes shared by all clients and the "
            "server of the round; draw one with new_rotation_seed()"
        )
    return bytes(rotation_seed)


def _check_vector(name: str, vector: npt.ArrayLike, length: int | None = None) -> FloatArray:
    array = np.asarray(vector, dtype=np.float64)
    if array.ndim != 1:
        raise ParameterError(f"{name} must be 1-D, got shape {array.shape}; flatten it first")
    if length is not None and array.shape[0] != length:
        raise ParameterError(f"{name} has {array.shape[0]} values, expected {length}")
    if not np.all(np.isfinite(array)):
        raise ParameterError(f"{name} contains NaN or infinity")
    return array


# -- uniform randomness ------------------------------------------------------------------------


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


# -- noise samplers ----------------------------------------------------------------------------


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
        An int64 array of ``size`` samples.

    Raises:
        ParameterError: ``mean`` or ``size`` out of range.
    """
    return _sample_poisson_from_uniforms(mean, size, _csprng_uniforms)


def _sample_poisson_from_uniforms(mean: float, size: int, uniforms: UniformSource) -> IntArray:
    mean = _check_real("mean", mean, low=0.0, high=MAX_POISSON_MEAN)
    size = _check_int("size", size, 0)
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
        An int64 array of ``size`` samples.

    Raises:
        ParameterError: ``mu`` or ``size`` out of range.
    """
    return _sample_skellam_from_uniforms(mu, size, _csprng_uniforms)


def _sample_skellam_from_uniforms(mu: float, size: int, uniforms: UniformSource) -> IntArray:
    mu = _check_real("mu", mu, low=0.0, high=MAX_POISSON_MEAN)
    size = _check_int("size", size, 0)
    positive = _sample_poisson_from_uniforms(mu, size, uniforms)
    return positive - _sample_poisson_from_uniforms(mu, size, uniforms)


# -- randomized Hadamard rotation ---------------------------------------------------------------


def new_rotation_seed() -> bytes:
    """A fresh seed for one round's rotation; it must be shared, it need not be secret."""
    return secrets.token_bytes(ROTATION_SEED_BYTES)


def padded_dimension(dimension: int) -> int:
    """The smallest power of two that is at least ``dimension`` (the rotation's length)."""
    dimension = _check_int("dimension", dimension, 1)
    return 1 << (dimension - 1).bit_length()


def _random_signs(rotation_seed: bytes, length: int) -> FloatArray:
    """``length`` signs +-1 from the bits of AES-CTR under the seed (least significant first)."""
    words = expand_mask(rotation_seed, (length + 31) // 32, np.uint32)
    bits = np.unpackbits(words.astype("<u4").view(np.uint8), bitorder="little")[:length]
    return 1.0 - 2.0 * bits.astype(np.float64)


def _walsh_hadamard(vector: FloatArray) -> FloatArray:
    """The orthonormal Walsh-Hadamard transform H / sqrt(D) (Sylvester order), O(D log D)."""
    length = vector.shape[0]
    result = vector.copy()
    half = 1
    while half < length:
        blocks = result.reshape(-1, 2, half)
        left = blocks[:, 0, :].copy()
        blocks[:, 0, :] += blocks[:, 1, :]
        blocks[:, 1, :] = left - blocks[:, 1, :]
        half *= 2
    result *= 1.0 / math.sqrt(length)
    return result


def hadamard_rotate(vector: npt.ArrayLike, rotation_seed: bytes) -> FloatArray:
    """Pad ``vector`` with zeros to a power of two D and return H S x / sqrt(D).

    S is the diagonal of random signs from ``rotation_seed``; H / sqrt(D) is orthonormal, so the
    rotation keeps the L2 norm and, for a random seed, makes every coordinate sub-Gaussian with
    variance proxy ||x||^2 / D (Kairouz et al. 2021, Section 4). All clients and the server of a
    round use the same seed.

    Args:
        vector: a 1-D float vector of any length d >= 1.
        rotation_seed: the round's 16-byte shared seed (see :func:`new_rotation_seed`).

    Returns:
        A float64 vector of length :func:`padded_dimension` (d).

    Raises:
        ParameterError: a malformed vector or seed.
    """
    seed = _check_seed(rotation_seed)
    array = _check_vector("vector", vector)
    length = padded_dimension(max(1, array.shape[0]))
    padded = np.zeros(length, dtype=np.float64)
    padded[: array.shape[0]] = array
    return _walsh_hadamard(padded * _random_signs(seed, length))


def inverse_hadamard_rotate(
    rotated: npt.ArrayLike, rotation_seed: bytes, dimension: int
) -> FloatArray:
    """Undo :func:`hadamard_rotate`: S H y / sqrt(D), then drop the padding.

    Args:
        rotated: a 1-D float vector whose length is a power of two.
        rotation_seed: the seed the rotation used.
        dimension: the original length d (at most the rotated length).

    Returns:
        The float64 vector of length ``dimension``.

    Raises:
        ParameterError: a malformed vector, seed or dimension.
    """
    seed = _check_seed(rotation_seed)
    array = _check_vector("rotated", rotated)
    length = array.shape[0]
    if length == 0 or length & (length - 1):
        raise ParameterError(f"a rotated vector has a power-of-two length, got {length}")
    dimension = _check_int("dimension", dimension, 1, length)
    return (_walsh_hadamard(array) * _random_signs(seed, length))[:dimension]


# -- clipping and conditional randomized rounding -----------------------------------------------


def clip_l2(vector: npt.ArrayLike, clip_norm: float) -> FloatArray:
    """Scale ``vector`` down to L2 norm ``clip_norm`` if it is longer; else return a copy.

    Raises:
        ParameterError: a malformed vector or a non-positive ``clip_norm``.
    """
    clip_norm = _check_real("clip_norm", clip_norm, low=0.0, low_open=True)
    array = _check_vector("vector", vector)
    norm = float(np.linalg.norm(array))
    if norm > clip_norm:
        return array * (clip_norm / norm)
    return array.copy()


def rounded_l2_bound(scaled_norm: float, dimension: int, beta: float) -> float:
    """The L2 bound that conditional randomized rounding enforces (Kairouz et al. 2021, Thm 23).

    For x in R^D with ||x|| <= c, independent randomized rounding of every coordinate gives
    ||round(x)||^2 <= c^2 + D/4 + sqrt(2 ln(1/beta)) (c + sqrt(D) / 2) with probability at least
    1 - beta, and always ||round(x)|| <= c + sqrt(D). The smaller of the two is the bound, and
    also the L2 sensitivity of one client's rounded contribution.

    Args:
        scaled_norm: c, the norm bound of the scaled vector (integer units).
        dimension: D, the number of rounded coordinates.
        beta: the failure probability of one attempt, in [0, 1); 0 uses the deterministic bound.

    Returns:
        The bound on the rounded vector's L2 norm.
    """
    scaled_norm = _check_real("scaled_norm", scaled_norm, low=0.0)
    dimension = _check_int("dimension", dimension, 1)
    beta = _check_real("beta", beta, low=0.0, high=1.0, high_open=True)
    always = scaled_norm + math.sqrt(dimension)
    if beta == 0.0:
        return always
    likely = math.sqrt(
        scaled_norm**2
        + dimension / 4.0
        + math.sqrt(2.0 * math.log(1.0 / beta)) * (scaled_norm + math.sqrt(dimension) / 2.0)
    )
    return min(likely, always)


def conditional_round(vector: npt.ArrayLike, norm_bound: float) -> IntArray:
    """Round each coordinate up or down at random (unbiasedly), retrying until ||.|| <= bound.

    Conditional randomized rounding (Kairouz et al. 2021, Section 4.1): a coordinate x becomes
    floor(x) + 1 with probability x - floor(x), else floor(x); the whole vector is redrawn until
    its L2 norm is at most ``norm_bound``. With the bound of :func:`rounded_l2_bound` one attempt
    fails with probability at most beta.

    Args:
        vector: a 1-D float vector.
        norm_bound: the L2 bound the result must meet.

    Returns:
        An int64 vector with L2 norm at most ``norm_bound``.

    Raises:
        ParameterError: the bound was not met in 1000 attempts (it is too tight for ``vector``).
    """
    return _conditional_round_from_uniforms(vector, norm_bound, _csprng_uniforms)


def _conditional_round_from_uniforms(
    vector: npt.ArrayLike, norm_bound: float, uniforms: UniformSource
) -> IntArray:
    array = _check_vector("vector", vector)
    norm_bound = _check_real("norm_bound", norm_bound, low=0.0)
    floor = np.floor(array)
    fraction = array - floor
    squared_bound = norm_bound * norm_bound
    for _ in range(_MAX_ROUNDING_ATTEMPTS):
        rounded = floor + (uniforms(array.shape[0]) < fraction)
        if float(np.dot(rounded, rounded)) <= squared_bound:
            return rounded.astype(np.int64)
    raise ParameterError(
        f"conditional rounding missed the L2 bound {norm_bound:.6g} in "
        f"{_MAX_ROUNDING_ATTEMPTS} attempts (input norm {np.linalg.norm(array):.6g}); clip the "
        "input first or derive the bound with rounded_l2_bound()"
    )


# -- wrap-around ------------------------------------------------------------------------------


def wrap_probability(
    *,
    modulus_bits: int,
    padded_dimension: int,
    num_clients: int,
    scaled_clip_norm: float,
    central_stddev: float,
) -> float:
    """Upper bound on the chance that some coordinate of the noised ring sum wraps around.

    Every coordinate of the integer sum is (approximately) sub-Gaussian: the rotated data term
    has variance proxy (n c / sqrt(D))^2, the rounding errors add at most sqrt(n) / 2 to its
    scale, and the independent noise adds sigma^2. A Gaussian tail per coordinate,
    P(|s_j| >= 2^(k-1)) <= 2 exp(-2^(2k-2) / (2 v)), and a union bound over the D coordinates
    give the result.

    Args:
        modulus_bits: k, the ring Z_{2^k}.
        padded_dimension: D, the number of ring coordinates.
        num_clients: n, the number of summed client vectors.
        scaled_clip_norm: c, the clip norm in integer units (clip_norm / gamma).
        central_stddev: sigma, the standard deviation of the summed noise (integer units).

    Returns:
        The bound, in [0, 1].
    """
    half_width = 2.0 ** (modulus_bits - 1)
    variance = _sum_coordinate_variance(
        padded_dimension, num_clients, scaled_clip_norm, central_stddev
    )
    per_coordinate = 2.0 * math.exp(-(half_width**2) / (2.0 * variance))
    return min(1.0, padded_dimension * per_coordinate)


def _sum_coordinate_variance(
    padded_dimension: int, num_clients: int, scaled_clip_norm: float, central_stddev: float
) -> float:
    data_scale = num_clients * scaled_clip_norm / math.sqrt(padded_dimension)
    return (data_scale + math.sqrt(num_clients) / 2.0) ** 2 + central_stddev**2


def _local_stddev_limit(mechanism: str) -> float:
    """The largest noise share each sampler draws exactly in float64, as a standard deviation."""
    return MAX_SIGMA if mechanism == "discrete_gaussian" else math.sqrt(2.0 * MAX_POISSON_MEAN)


def _bits_for_wrap(variance: float, padded_dimension: int, target: float) -> int:
    """Smallest k with 2 D exp(-2^(2k-2) / (2 v)) <= target."""
    half_width = math.sqrt(2.0 * variance * math.log(2.0 * padded_dimension / target))
    return max(1, math.ceil(math.log2(half_width)) + 1)


# -- configuration ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DistributedDPConfig:
    """Validated parameters of one distributed DP mechanism.

    Integer units are the units after scaling by 1 / ``granularity``. The privacy guarantee is
    that of a Gaussian mechanism with noise multiplier ``noise_multiplier`` relative to the L2
    sensitivity of one client's rounded vector (:attr:`l2_sensitivity`); see
    :class:`PrivacyAccountant` for what that approximation assumes.

    Attributes:
        mechanism: ``"discrete_gaussian"`` (Kairouz et al. 2021) or ``"skellam"`` (Agarwal et
            al. 2021).
        dimension: d, the length of a client's float update.
        clip_norm: c, the L2 clipping bound of an update (float units).
        expected_clients: n, the number of clients whose noise shares add up to the full noise.
        modulus_bits: k, the ring Z_{2^k} of the secure sum.
        noise_multiplier: z, central noise standard deviation / L2 sensitivity; 0 adds no noise
            (no privacy: for tests and debugging only).
        granularity: gamma, the float value of one integer unit.
        rounding_beta: beta of conditional rounding, in [0, 1).
        max_wrap_probability: the wrap-around bound above which a warning is issued.
    """

    mechanism: Mechanism
    dimension: int
    clip_norm: float
    expected_clients: int
    modulus_bits: int
    noise_multiplier: float
    granularity: float
    rounding_beta: float = DEFAULT_ROUNDING_BETA
    max_wrap_probability: float = DEFAULT_MAX_WRAP_PROBABILITY

    def __post_init__(self) -> None:
        _check_mechanism(self.mechanism)
        _check_int("dimension", self.dimension, 1, 2**40)
        _check_real("clip_norm", self.clip_norm, low=0.0, low_open=True)
        _check_int("expected_clients", self.expected_clients, 1)
        ring_dtype(_check_int("modulus_bits", self.modulus_bits, 2, 64))
        _check_real("noise_multiplier", self.noise_multiplier, low=0.0)
        _check_real(
            "granularity",
            self.granularity,
            low=0.0,
            low_open=True,
            fix="choose it with choose_parameters()",
        )
        _check_real("rounding_beta", self.rounding_beta, low=0.0, high=1.0, high_open=True)
        _check_real(
            "max_wrap_probability", self.max_wrap_probability, low=0.0, high=1.0, low_open=True
        )
        if self.scaled_clip_norm > _MAX_SCALED_NORM:
            raise ParameterError(
                f"clip_norm / granularity = {self.scaled_clip_norm:.3g} exceeds 2^40, beyond "
                f"which float64 rounding is inexact; use granularity >= "
                f"{self.clip_norm / _MAX_SCALED_NORM:.3g}"
            )
        if self.local_stddev > _local_stddev_limit(self.mechanism):
            raise ParameterError(
                f"each client's noise standard deviation {self.local_stddev:.3g} exceeds "
                f"{_local_stddev_limit(self.mechanism):.3g} integer units, the {self.mechanism} "
                "sampler's float64 range; increase granularity (choose_parameters() does)"
            )
        # Warnings point at the caller of the generated __init__.
        self._warn_if_wraps(self.expected_clients, stacklevel=4)
        self._warn_if_too_discrete(stacklevel=4)

    # -- derived quantities -------------------------------------------------------------------

    @property
    def padded_dimension(self) -> int:
        """D, the ring vector length: ``dimension`` rounded up to a power of two."""
        return padded_dimension(self.dimension)

    @property
    def dtype(self) -> np.dtype[np.unsignedinteger]:
        """The ring dtype: uint32 while k <= 32, else uint64."""
        return ring_dtype(self.modulus_bits)

    @property
    def scaled_clip_norm(self) -> float:
        """c / gamma: the clip norm in integer units."""
        return self.clip_norm / self.granularity

    @property
    def l2_sensitivity(self) -> float:
        """Delta_2: the L2 bound on one client's rounded vector, in integer units."""
        return rounded_l2_bound(self.scaled_clip_norm, self.padded_dimension, self.rounding_beta)

    @property
    def central_stddev(self) -> float:
        """sigma = z * Delta_2: the standard deviation of the summed noise, integer units."""
        return self.noise_multiplier * self.l2_sensitivity

    @property
    def local_stddev(self) -> float:
        """sigma / sqrt(n): the standard deviation of one client's noise share."""
        return self.central_stddev / math.sqrt(self.expected_clients)

    @property
    def local_skellam_mu(self) -> float:
        """mu of one client's Skellam share Sk(mu, mu), whose variance is 2 mu = sigma^2 / n."""
        return self.local_stddev**2 / 2.0

    @property
    def noise_inflation(self) -> float:
        """Float-space noise relative to an unquantized Gaussian: gamma Delta_2 / c (>= 1)."""
        return self.granularity * self.l2_sensitivity / self.clip_norm

    @property
    def wrap_probability(self) -> float:
        """Bound on the wrap-around probability of a round with ``expected_clients`` clients."""
        return self.wrap_probability_for(self.expected_clients)

    def wrap_probability_for(self, num_clients: int) -> float:
        """Bound on the wrap-around probability of a round that sums ``num_clients`` vectors.

        The noise of ``num_clients`` shares has variance sigma^2 num_clients / n.
        """
        num_clients = _check_int("num_clients", num_clients, 1)
        return wrap_probability(
            modulus_bits=self.modulus_bits,
            padded_dimension=self.padded_dimension,
            num_clients=num_clients,
            scaled_clip_norm=self.scaled_clip_norm,
            central_stddev=self.local_stddev * math.sqrt(num_clients),
        )

    def minimum_modulus_bits(self, num_clients: int | None = None) -> int:
        """The smallest ring that keeps the wrap probability under the limit at this gamma."""
        clients = self.expected_clients if num_clients is None else num_clients
        variance = _sum_coordinate_variance(
            self.padded_dimension,
            clients,
            self.scaled_clip_norm,
            self.local_stddev * math.sqrt(clients),
        )
        return _bits_for_wrap(variance, self.padded_dimension, self.max_wrap_probability)

    @property
    def discretization_gap(self) -> float:
        """tau * D of Kairouz et al. 2021, Theorem 1 (discrete Gaussian only, else 0).

        tau = 10 sum_{k=1}^{n-1} exp(-2 pi^2 s^2 k / (k + 1)) with s the per-client standard
        deviation; the sum of the shares is then within this much of a Gaussian in the sense of
        the theorem. It is reported, not added to epsilon.
        """
        if self.mechanism != "discrete_gaussian" or self.noise_multiplier == 0.0:
            return 0.0
        decay = 2.0 * math.pi**2 * self.local_stddev**2
        # The terms grow with k towards exp(-decay); past 10^6 they are bounded by that limit.
        exact = np.arange(1, min(self.expected_clients, 1_000_001), dtype=np.float64)
        tail = max(0, self.expected_clients - 1 - exact.shape[0]) * math.exp(-decay)
        tau = 10.0 * (float(np.sum(np.exp(-decay * exact / (exact + 1.0)))) + tail)
        return tau * self.padded_dimension

    def to_dict(self) -> dict[str, float | int | str]:
        """A JSON-ready summary: the parameters and the derived quantities."""
        return {
            "mechanism": self.mechanism,
            "dimension": self.dimension,
            "padded_dimension": self.padded_dimension,
            "clip_norm": self.clip_norm,
            "expected_clients": self.expected_clients,
            "modulus_bits": self.modulus_bits,
            "noise_multiplier": self.noise_multiplier,
            "granularity": self.granularity,
            "rounding_beta": self.rounding_beta,
            "l2_sensitivity": self.l2_sensitivity,
            "central_stddev": self.central_stddev,
            "local_stddev": self.local_stddev,
            "noise_inflation": self.noise_inflation,
            "wrap_probability": self.wrap_probability,
        }

    def _warn_if_wraps(self, num_clients: int, *, stacklevel: int) -> None:
        probability = self.wrap_probability_for(num_clients)
        if probability > self.max_wrap_probability:
            warnings.warn(
                f"the noised sum of {num_clients} clients wraps around Z_2^{self.modulus_bits} "
                f"with probability up to {probability:.3g} (limit "
                f"{self.max_wrap_probability:.3g}); increase modulus_bits to at least "
                f"{self.minimum_modulus_bits(num_clients)} or the granularity",
                DPWrapAroundWarning,
                stacklevel=stacklevel,
            )

    def _warn_if_too_discrete(self, *, stacklevel: int) -> None:
        if self.noise_multiplier > 0.0 and (
            self.discretization_gap > 1e-6
            or (self.mechanism == "skellam" and self.local_skellam_mu < 1.0)
        ):
            warnings.warn(
                f"each client's noise share has standard deviation {self.local_stddev:.3g} "
                "integer units, too small for the Gaussian approximation of the accountant; "
                "use a finer granularity or more modulus_bits",
                DPApproximationWarning,
                stacklevel=stacklevel,
            )


# -- the mechanism ----------------------------------------------------------------------------


class DistributedDPMechanism:
    """Client-side encoding and server-side decoding of one distributed DP mechanism.

    Every client of a round calls :meth:`encode` with the same ``rotation_seed`` and submits the
    result to secure aggregation (vector length :attr:`DistributedDPConfig.padded_dimension`,
    ring ``modulus_bits``); the server calls :meth:`decode` on the modular sum. The noise adds up
    to the full ``central_stddev`` only if ``expected_clients`` shares are summed: a round with
    fewer survivors (dropouts) carries proportionally less noise than the accountant assumes.
    Clients that collude with the server can subtract their own shares, so the guarantee holds
    against the server alone and weakens in proportion to the colluding fraction (Kairouz et al.
    2021, Section 1; the usual trust model of distributed DP).

    Args:
        config: the validated parameters.
    """

    def __init__(self, config: DistributedDPConfig) -> None:
        _check_type("config", config, DistributedDPConfig)
        self.config = config

    def encode(self, update: npt.ArrayLike, rotation_seed: bytes) -> RingArray:
        """Clip, rotate, scale, round, add this client's noise share and wrap into Z_{2^k}.

        Args:
            update: the client's 1-D float update of length ``dimension``.
            rotation_seed: the round's shared 16-byte seed.

        Returns:
            A ring vector of length ``padded_dimension`` and dtype ``config.dtype``.

        Raises:
            ParameterError: a malformed update or seed.
        """
        config = self.config
        seed = _check_seed(rotation_seed)
        array = _check_vector("update", update, config.dimension)
        clipped = clip_l2(array, config.clip_norm)
        scaled = hadamard_rotate(clipped, seed) * (1.0 / config.granularity)
        rounded = conditional_round(scaled, config.l2_sensitivity)
        noised = rounded + self._noise_share(rounded.shape[0])
        return self._wrap(noised)

    def decode(self, ring_sum: npt.ArrayLike, num_clients: int, rotation_seed: bytes) -> FloatArray:
        """Turn the modular sum of ``num_clients`` encoded vectors back into a float sum.

        Reads each coordinate as a centred integer in [-2^(k-1), 2^(k-1)), multiplies by gamma,
        undoes the rotation and drops the padding. Warns with :class:`DPWrapAroundWarning` when
        ``num_clients`` makes wrap-around likelier than the configured limit.

        Args:
            ring_sum: the sum mod 2^k, length ``padded_dimension``, unsigned integers.
            num_clients: how many encoded vectors the sum contains.
            rotation_seed: the seed the clients used.

        Returns:
            The noisy float64 sum of the clipped updates, length ``dimension``.

        Raises:
            ParameterError: a malformed sum, count or seed.
        """
        config = self.config
        seed = _check_seed(rotation_seed)
        num_clients = _check_int("num_clients", num_clients, 1)
        array = np.asarray(ring_sum)
        if array.shape != (config.padded_dimension,):
            raise ParameterError(
                f"ring_sum has shape {array.shape}, expected ({config.padded_dimension},)"
            )
        if array.dtype.kind != "u":
            raise ParameterError(f"ring_sum must hold unsigned ring integers, not {array.dtype}")
        words = array.astype(np.uint64)
        if config.modulus_bits < 64 and np.any(words >> np.uint64(config.modulus_bits)):
            raise ParameterError(f"ring_sum has values outside Z_2^{config.modulus_bits}")
        config._warn_if_wraps(num_clients, stacklevel=3)
        centred = _centre(words, config.modulus_bits)
        return inverse_hadamard_rotate(
            centred.astype(np.float64) * config.granularity, seed, config.dimension
        )

    def _noise_share(self, length: int) -> IntArray:
        config = self.config
        if config.noise_multiplier == 0.0:
            return np.zeros(length, dtype=np.int64)
        if config.mechanism == "discrete_gaussian":
            return sample_discrete_gaussian(config.local_stddev, length)
        return sample_skellam(config.local_skellam_mu, length)

    def _wrap(self, values: IntArray) -> RingArray:
        words = values.astype(np.uint64)  # two's complement: already correct modulo 2^64
        if self.config.modulus_bits < 64:
            words &= np.uint64((1 << self.config.modulus_bits) - 1)
        return words.astype(self.config.dtype)


def _centre(words: npt.NDArray[np.uint64], modulus_bits: int) -> IntArray:
    """Read ring words as signed integers in [-2^(k-1), 2^(k-1))."""
    if modulus_bits == 64:
        return words.view(np.int64)
    signed = words.astype(np.int64)
    signed[signed >= (1 << (modulus_bits - 1))] -= 1 << modulus_bits
    return signed


# -- accounting (dp-accounting) -----------------------------------------------------------------


def _dp_accounting() -> ModuleType:
    try:
        return importlib.import_module("dp_accounting")
    except ImportError as error:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "privacy accounting needs Google's dp-accounting: pip install 'secagg[dp]' "
            "(or pip install dp-accounting)"
        ) from error


def _training_event(noise_multiplier: float, sampling_rate: float, rounds: int) -> object:
    """The DpEvent of ``rounds`` rounds, each Poisson-sampling clients at ``sampling_rate``."""
    dp = _dp_accounting()
    per_round = dp.GaussianDpEvent(noise_multiplier)
    if sampling_rate < 1.0:
        per_round = dp.PoissonSampledDpEvent(sampling_rate, per_round)
    return dp.SelfComposedDpEvent(per_round, rounds)


class _LibraryAccountant(Protocol):
    """The part of ``dp_accounting.PrivacyAccountant`` used here (the library is untyped)."""

    def compose(self, event: object) -> object: ...

    def get_epsilon(self, target_delta: float) -> float: ...


class _LibraryRdpAccountant(_LibraryAccountant, Protocol):
    def get_epsilon_and_optimal_order(self, target_delta: float) -> tuple[float, float]: ...


def _fresh_accountant(kind: AccountantKind) -> _LibraryAccountant:
    dp = _dp_accounting()
    adjacency = dp.NeighboringRelation.ADD_OR_REMOVE_ONE
    if kind == "rdp":
        return cast(_LibraryAccountant, dp.rdp.RdpAccountant(neighboring_relation=adjacency))
    return cast(_LibraryAccountant, dp.pld.PLDAccountant(neighboring_relation=adjacency))


class PrivacyAccountant:
    """Client-level (epsilon, delta) spent by distributed DP training, from ``dp-accounting``.

    Each round Poisson-samples every client with probability ``sampling_rate`` and releases the
    sum of the sampled clients' rounded vectors plus noise of standard deviation z * Delta_2
    (z = ``noise_multiplier``). The accountant composes, with Google's ``dp-accounting``,
    ``SelfComposedDpEvent(PoissonSampledDpEvent(q, GaussianDpEvent(z)), rounds)`` under
    add-or-remove-one adjacency, in its RDP accountant (``RdpAccountant``, default) or its PLD
    accountant (``PLDAccountant``, tighter and slower).

    Approximation: the library has no discrete Gaussian or Skellam event, so the summed
    discrete noise is accounted as the continuous Gaussian of the same variance. For the
    distributed discrete Gaussian, Kairouz et al. 2021 (Theorem 1) bound the difference by a
    term tau * d that is negligible once each client's share has a standard deviation of a few
    integer units (:attr:`DistributedDPConfig.discretization_gap` reports it); the Skellam
    mechanism's Renyi divergence converges to the Gaussian one as mu grows (Agarwal et al. 2021,
    Theorem 3.5). The configuration warns with :class:`DPApproximationWarning` when the shares
    are too small for this to hold.

    Args:
        noise_multiplier: z, the central noise standard deviation over the L2 sensitivity.
        sampling_rate: q, each client's probability of taking part in a round, in (0, 1].
        delta: the target delta, in (0, 1).
        accountant: ``"rdp"`` or ``"pld"``.
    """

    def __init__(
        self,
        *,
        noise_multiplier: float,
        sampling_rate: float,
        delta: float,
        accountant: AccountantKind = "rdp",
    ) -> None:
        self.noise_multiplier = _check_real("noise_multiplier", noise_multiplier, low=0.0)
        self.sampling_rate = _check_real(
            "sampling_rate", sampling_rate, low=0.0, high=1.0, low_open=True
        )
        self.delta = _check_real("delta", delta, low=0.0, high=1.0, low_open=True, high_open=True)
        self.accountant = _check_accountant(accountant)
        self._cache: dict[int, tuple[float, float | None]] = {}

    @classmethod
    def for_config(
        cls,
        config: DistributedDPConfig,
        *,
        sampling_rate: float,
        delta: float,
        accountant: AccountantKind = "rdp",
    ) -> PrivacyAccountant:
        """The accountant of a configured mechanism."""
        return cls(
            noise_multiplier=config.noise_multiplier,
            sampling_rate=sampling_rate,
            delta=delta,
            accountant=accountant,
        )

    def epsilon_after(self, rounds: int) -> float:
        """The epsilon spent after ``rounds`` rounds at this accountant's delta.

        Raises:
            ParameterError: ``rounds`` is negative.
        """
        return self._epsilon_and_order(rounds)[0]

    def privacy_report(self, rounds: int) -> dict[str, float | int | str | None]:
        """A JSON-ready report of the privacy spent after ``rounds`` rounds.

        Keys: ``epsilon``, ``delta``, ``rounds``, ``noise_multiplier``, ``sampling_rate``,
        ``accountant`` (the dp-accounting class), ``library`` (name and version),
        ``rdp_order`` (the optimal Renyi order, RDP only, else ``None``) and ``neighboring``.
        """
        epsilon, order = self._epsilon_and_order(rounds)
        return {
            "epsilon": epsilon,
            "delta": self.delta,
            "rounds": rounds,
            "noise_multiplier": self.noise_multiplier,
            "sampling_rate": self.sampling_rate,
            "accountant": "RdpAccountant" if self.accountant == "rdp" else "PLDAccountant",
            "library": f"dp-accounting {_library_version()}",
            "rdp_order": order,
            "neighboring": "add_or_remove_one",
        }

    def _epsilon_and_order(self, rounds: int) -> tuple[float, float | None]:
        rounds = _check_int("rounds", rounds, 0)
        if rounds not in self._cache:
            self._cache[rounds] = self._compute(rounds)
        return self._cache[rounds]

    def _compute(self, rounds: int) -> tuple[float, float | None]:
        if rounds == 0:
            return 0.0, None
        if self.noise_multiplier == 0.0:
            return math.inf, None
        accountant = _fresh_accountant(self.accountant)
        event = _training_event(self.noise_multiplier, self.sampling_rate, rounds)
        accountant.compose(event)
        if self.accountant == "rdp":
            rdp = cast(_LibraryRdpAccountant, accountant)
            epsilon, order = rdp.get_epsilon_and_optimal_order(self.delta)
            return float(epsilon), float(order)
        return float(accountant.get_epsilon(self.delta)), None


def _library_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dp-accounting")
    except PackageNotFoundError:  # pragma: no cover - a source checkout of the library
        return "unknown"


def _calibrate_noise_multiplier(
    target_epsilon: float,
    target_delta: float,
    rounds: int,
    sampling_rate: float,
    accountant: AccountantKind,
) -> float:
    """The smallest z whose composed event spends at most ``target_epsilon`` (dp-accounting)."""
    dp = _dp_accounting()
    bracket = dp.LowerEndpointAndGuess(1e-3, 1.0)
    if accountant == "pld":
        # A PLD at tiny z needs an enormous discretisation grid (tens of GiB); start the PLD
        # search from the RDP answer, which upper-bounds it, and search a factor of 4 below.
        upper = _calibrate_noise_multiplier(
            target_epsilon, target_delta, rounds, sampling_rate, "rdp"
        )
        bracket = dp.LowerEndpointAndGuess(upper / 4, upper)
    noise_multiplier = dp.calibrate_dp_mechanism(
        lambda: _fresh_accountant(accountant),
        lambda z: _training_event(z, sampling_rate, rounds),
        target_epsilon,
        target_delta,
        bracket_interval=bracket,
    )
    return float(noise_multiplier)


def _choose_granularity(
    *,
    mechanism: Mechanism,
    clip_norm: float,
    padded_dimension: int,
    expected_clients: int,
    modulus_bits: int,
    noise_multiplier: float,
    rounding_beta: float,
    max_wrap_probability: float,
) -> float:
    """The finest gamma whose wrap-around bound is at most the limit.

    Finer is better: the rounding inflation gamma * Delta_2 / c falls towards 1. The search runs
    between c / 2^40 (finer gains nothing in float64) and c / sqrt(D) (coarser and the grid step
    exceeds a typical rotated coordinate, so quantization dominates); if even the coarsest grid
    wraps too often, it is returned and the configuration warns.
    """

    def wraps(granularity: float) -> float:
        scaled = clip_norm / granularity
        sensitivity = rounded_l2_bound(scaled, padded_dimension, rounding_beta)
        return wrap_probability(
            modulus_bits=modulus_bits,
            padded_dimension=padded_dimension,
            num_clients=expected_clients,
            scaled_clip_norm=scaled,
            central_stddev=noise_multiplier * sensitivity,
        )

    finest = max(
        clip_norm / _MAX_SCALED_NORM,
        _finest_for_sampler(
            mechanism, clip_norm, padded_dimension, expected_clients, noise_multiplier
        ),
    )
    coarsest = max(finest, clip_norm / math.sqrt(padded_dimension))
    if wraps(finest) <= max_wrap_probability:
        return finest
    if wraps(coarsest) > max_wrap_probability:
        return coarsest
    low, high = math.log(finest), math.log(coarsest)
    for _ in range(100):
        middle = (low + high) / 2.0
        if wraps(math.exp(middle)) <= max_wrap_probability:
            high = middle
        else:
            low = middle
    return math.exp(high)


def _finest_for_sampler(
    mechanism: Mechanism,
    clip_norm: float,
    padded_dimension: int,
    expected_clients: int,
    noise_multiplier: float,
) -> float:
    """The finest gamma whose noise shares stay inside the sampler's float64 range.

    Uses Delta_2 <= c / gamma + sqrt(D), so z Delta_2 / sqrt(n) <= limit holds at the result.
    """
    if noise_multiplier == 0.0:
        return 0.0
    headroom = _local_stddev_limit(mechanism) * math.sqrt(expected_clients) / noise_multiplier
    headroom -= math.sqrt(padded_dimension)
    if headroom <= 0.0:
        raise ParameterError(
            f"noise multiplier {noise_multiplier:.3g} is too large for the {mechanism} sampler "
            f"at dimension {padded_dimension}; raise target_epsilon or expected_clients"
        )
    return clip_norm / headroom


def choose_parameters(
    *,
    target_epsilon: float,
    target_delta: float,
    rounds: int,
    sampling_rate: float,
    expected_clients: int,
    dimension: int,
    modulus_bits: int,
    clip_norm: float,
    mechanism: Mechanism = "discrete_gaussian",
    rounding_beta: float = DEFAULT_ROUNDING_BETA,
    max_wrap_probability: float = DEFAULT_MAX_WRAP_PROBABILITY,
    accountant: AccountantKind = "rdp",
) -> DistributedDPConfig:
    """Choose the noise and the granularity for a target (epsilon, delta) over ``rounds`` rounds.

    1. The noise multiplier z is the smallest for which ``dp-accounting`` reports at most
       ``target_epsilon`` after ``rounds`` Poisson-sampled rounds
       (``dp_accounting.calibrate_dp_mechanism`` over the events of :class:`PrivacyAccountant`).
    2. The granularity gamma is the finest for which the wrap-around bound of the sum of
       ``expected_clients`` vectors in Z_{2^k} stays at most ``max_wrap_probability``
       (:func:`wrap_probability`). If no gamma achieves it, the coarsest sensible one is used and
       :class:`DPWrapAroundWarning` names the smallest ``modulus_bits`` that would.

    Args:
        target_epsilon: epsilon to spend over all rounds, > 0.
        target_delta: delta, in (0, 1); typically below 1 / (number of clients).
        rounds: number of training rounds, >= 1.
        sampling_rate: q, each client's probability of taking part in a round, in (0, 1].
        expected_clients: n, clients per round (about q times the population).
        dimension: d, the length of a float update.
        modulus_bits: k, the ring of the secure sum, in [2, 64].
        clip_norm: c, the L2 clipping bound of an update.
        mechanism: ``"discrete_gaussian"`` or ``"skellam"``.
        rounding_beta: beta of conditional rounding.
        max_wrap_probability: the wrap-around limit (default 1e-4).
        accountant: ``"rdp"`` (default) or ``"pld"``.

    Returns:
        The validated :class:`DistributedDPConfig`.

    Raises:
        ParameterError: an argument out of range.
        ImportError: dp-accounting is not installed.
    """
    mechanism_name = _check_mechanism(mechanism)
    accountant_name = _check_accountant(accountant)
    target_epsilon = _check_real("target_epsilon", target_epsilon, low=0.0, high=1e3, low_open=True)
    target_delta = _check_real(
        "target_delta", target_delta, low=0.0, high=1.0, low_open=True, high_open=True
    )
    rounds = _check_int("rounds", rounds, 1)
    sampling_rate = _check_real("sampling_rate", sampling_rate, low=0.0, high=1.0, low_open=True)
    expected_clients = _check_int("expected_clients", expected_clients, 1)
    modulus_bits = _check_int("modulus_bits", modulus_bits, 2, 64)
    clip_norm = _check_real("clip_norm", clip_norm, low=0.0, low_open=True)
    rounding_beta = _check_real("rounding_beta", rounding_beta, low=0.0, high=1.0, high_open=True)
    noise_multiplier = _calibrate_noise_multiplier(
        target_epsilon,
        target_delta,
        rounds,
        sampling_rate,
        accountant_name,
    )
    granularity = _choose_granularity(
        mechanism=mechanism_name,
        clip_norm=clip_norm,
        padded_dimension=padded_dimension(dimension),
        expected_clients=expected_clients,
        modulus_bits=modulus_bits,
        noise_multiplier=noise_multiplier,
        rounding_beta=rounding_beta,
        max_wrap_probability=max_wrap_probability,
    )
    return DistributedDPConfig(
        mechanism=mechanism_name,
        dimension=dimension,
        clip_norm=clip_norm,
        expected_clients=expected_clients,
        modulus_bits=modulus_bits,
        noise_multiplier=noise_multiplier,
        granularity=granularity,
        rounding_beta=rounding_beta,
        max_wrap_probability=max_wrap_probability,
    )
