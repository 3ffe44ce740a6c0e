"""The randomized Walsh-Hadamard rotation: the transform, orthogonality, padding and seeds."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import hadamard

from secagg import dp
from secagg.dp import rotation
from secagg.errors import ParameterError


def test_walsh_hadamard_matches_sylvester_matrix() -> None:
    vector = np.arange(16, dtype=np.float64) - 3.5
    expected = hadamard(16) @ vector / 4.0
    np.testing.assert_allclose(rotation._walsh_hadamard(vector), expected, atol=1e-12)


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
