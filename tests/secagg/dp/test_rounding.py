"""Clipping and conditional randomized rounding: norm bounds, unbiasedness and refusals."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from secagg import dp
from secagg.dp import rounding
from secagg.dp.sampling import UniformSource
from secagg.errors import ParameterError

Seeded = Callable[[str], UniformSource]


def test_clip_l2_scales_long_vectors_only() -> None:
    long = np.full(4, 3.0)
    np.testing.assert_allclose(np.linalg.norm(dp.clip_l2(long, 2.0)), 2.0)
    short = np.array([0.1, -0.2])
    np.testing.assert_array_equal(dp.clip_l2(short, 2.0), short)


def test_conditional_rounding_respects_the_norm_bound(seeded: Seeded) -> None:
    dimension, scaled_norm = 256, 40.0
    vector = np.linspace(-1.0, 1.0, dimension) + 0.37
    vector *= scaled_norm / np.linalg.norm(vector)
    bound = dp.rounded_l2_bound(scaled_norm, dimension, dp.DEFAULT_ROUNDING_BETA)
    assert scaled_norm < bound < scaled_norm + math.sqrt(dimension)
    uniforms = seeded("rounding")
    total = np.zeros(dimension)
    trials = 400
    for _ in range(trials):
        rounded = rounding._conditional_round_from_uniforms(vector, bound, uniforms)
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
