"""Clipping and conditional randomized rounding: a float update becomes a bounded integer vector.

The L2 sensitivity the accountant charges for is the norm bound of one client's *rounded*
vector, so this is where that bound is enforced (Kairouz et al. 2021, Section 4.1):
:func:`clip_l2` bounds the float norm, :func:`rounded_l2_bound` gives the bound the rounded
vector must meet, and :func:`conditional_round` rounds every coordinate up or down at random,
unbiasedly, and redraws until the bound holds. The randomness is the CSPRNG of
:mod:`secagg.dp.sampling`; the private ``_conditional_round_from_uniforms`` seam takes a uniform
source for deterministic tests.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import numpy.typing as npt

from secagg.dp._checks import FloatArray, _check_int, _check_real, _check_vector
from secagg.dp.sampling import IntArray, UniformSource, _csprng_uniforms
from secagg.errors import ParameterError

__all__ = ["DEFAULT_ROUNDING_BETA", "clip_l2", "conditional_round", "rounded_l2_bound"]

#: Failure probability beta of one conditional-rounding attempt's norm bound; TFF's default.
DEFAULT_ROUNDING_BETA: Final = math.exp(-0.5)
_MAX_ROUNDING_ATTEMPTS: Final = 1000


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
