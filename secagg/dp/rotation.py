"""The randomized Walsh-Hadamard rotation that spreads an update evenly over its coordinates.

Before rounding, every client pads its clipped update to a power of two D and rotates it by
H S / sqrt(D): S is a diagonal of random signs from a seed shared by the clients and the server
of the round, H the Walsh-Hadamard matrix. The rotation keeps the L2 norm and makes every
coordinate small (sub-Gaussian with variance proxy ||x||^2 / D; Kairouz et al. 2021, Section 4),
which is what lets a modest ring hold the noised sum without wrapping around; the server undoes
it after decoding. The seed must be shared but need not be secret; the signs are the bits of
AES-CTR under it, the same expansion as the masks.
"""

from __future__ import annotations

import math
import secrets
from typing import Final

import numpy as np
import numpy.typing as npt

from secagg.dp._checks import FloatArray, _check_int, _check_vector
from secagg.errors import ParameterError
from secagg.hazmat.prg import MASK_KEY_BYTES, expand_mask

__all__ = [
    "ROTATION_SEED_BYTES",
    "hadamard_rotate",
    "inverse_hadamard_rotate",
    "new_rotation_seed",
    "padded_dimension",
]

#: Length of the shared seed of the randomized Hadamard rotation (one AES-128 key).
ROTATION_SEED_BYTES: Final = MASK_KEY_BYTES


def _check_seed(rotation_seed: object) -> bytes:
    if not isinstance(rotation_seed, bytes | bytearray) or len(rotation_seed) != (
        ROTATION_SEED_BYTES
    ):
        raise ParameterError(
            f"rotation_seed must be {ROTATION_SEED_BYTES} bytes shared by all clients and the "
            "server of the round; draw one with new_rotation_seed()"
        )
    return bytes(rotation_seed)


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
