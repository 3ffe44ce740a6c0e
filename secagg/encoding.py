"""Clipping and fixed-point quantization of float updates into the ring Z_{2^k}.

A value x is clipped to [-clip, clip] and mapped to an integer in [0, 2^value_bits - 1] by an
offset and a scale; stochastic rounding makes the map unbiased. The ring is sized with headroom
so that the sum of ``num_clients`` quantized values can never wrap:
``modulus_bits = value_bits + ceil(log2(num_clients))``. Vectors are uint32 while the ring fits in
32 bits, else uint64; if no ring of at most 64 bits fits, construction raises
:class:`ParameterError` instead of overflowing silently (Flower's SecAgg+ wraps without notice).
Rounding noise comes from AES-CTR keyed by :mod:`secrets`, never from a numpy RNG.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from secagg.errors import ParameterError
from secagg.hazmat.prg import MASK_KEY_BYTES, expand_mask

__all__ = ["MAX_MODULUS_BITS", "QuantizationScheme", "ring_dtype"]

MAX_MODULUS_BITS: Final = 64
Rounding = Literal["stochastic", "nearest"]
RingArray = npt.NDArray[np.unsignedinteger]


def ring_dtype(modulus_bits: int) -> np.dtype[np.unsignedinteger]:
    """The narrowest numpy dtype holding Z_{2^modulus_bits}: uint32 or uint64."""
    if not 1 <= modulus_bits <= MAX_MODULUS_BITS:
        raise ParameterError(f"modulus_bits must be in [1, 64], got {modulus_bits}")
    return np.dtype(np.uint32) if modulus_bits <= 32 else np.dtype(np.uint64)


@dataclass(frozen=True, slots=True)
class QuantizationScheme:
    """Fixed-point encoding of floats in [-clip, clip] for a sum over up to ``num_clients``.

    Attributes:
        clip: values are clipped to [-clip, clip] before encoding.
        value_bits: bits of one encoded value (2^value_bits levels).
        num_clients: the most inputs that will ever be summed.
        modulus_bits: ring size k; defaults to the smallest wrap-free value.
    """

    clip: float
    value_bits: int
    num_clients: int
    modulus_bits: int = field(default=0)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.clip) and self.clip > 0):
            raise ParameterError(f"clip must be a positive finite number, got {self.clip}")
        if not 1 <= self.value_bits <= 53:
            raise ParameterError(
                f"value_bits must be in [1, 53] (float64 precision), got {self.value_bits}"
            )
        if self.num_clients < 1:
            raise ParameterError(f"num_clients must be >= 1, got {self.num_clients}")
        # ceil(log2 n) computed exactly in integers (floats round it down for huge n).
        needed = self.value_bits + (self.num_clients - 1).bit_length()
        if needed > MAX_MODULUS_BITS:
            raise ParameterError(
                f"{self.num_clients} clients at {self.value_bits} bits per value need a "
                f"{needed}-bit ring; the largest is {MAX_MODULUS_BITS}: reduce value_bits to "
                f"{MAX_MODULUS_BITS - needed + self.value_bits} or fewer"
            )
        if self.modulus_bits == 0:
            object.__setattr__(self, "modulus_bits", needed)
        elif not needed <= self.modulus_bits <= MAX_MODULUS_BITS:
            raise ParameterError(
                f"modulus_bits={self.modulus_bits} cannot hold the sum of {self.num_clients} "
                f"{self.value_bits}-bit values without wrapping; use at least {needed}"
            )

    @property
    def dtype(self) -> np.dtype[np.unsignedinteger]:
        """uint32 when the ring fits in 32 bits, else uint64."""
        return ring_dtype(self.modulus_bits)

    @property
    def levels(self) -> int:
        """The largest encoded value, 2^value_bits - 1."""
        return (1 << self.value_bits) - 1

    @property
    def step(self) -> float:
        """The float distance between adjacent levels."""
        return 2.0 * self.clip / self.levels

    def quantize(self, values: npt.ArrayLike, *, rounding: Rounding = "stochastic") -> RingArray:
        """Clip and encode ``values`` into [0, 2^value_bits - 1] as ring integers.

        Stochastic rounding is unbiased: E[decode(quantize(x))] = clip(x).
        """
        given = np.asarray(values, dtype=np.float64)
        if not np.all(np.isfinite(given)):
            raise ParameterError("cannot quantize NaN or infinity")
        array = np.atleast_1d(given)
        scaled = (np.clip(array, -self.clip, self.clip) + self.clip) * (
            self.levels / (2 * self.clip)
        )
        if rounding == "stochastic":
            scaled += _uniform01(scaled.size).reshape(scaled.shape)
            encoded = np.floor(scaled)
        elif rounding == "nearest":
            encoded = np.rint(scaled)
        else:
            raise ParameterError(f"rounding must be 'stochastic' or 'nearest', not {rounding!r}")
        np.clip(encoded, 0, self.levels, out=encoded)
        return encoded.astype(self.dtype).reshape(given.shape)

    def dequantize_sum(self, total: npt.ArrayLike, count: int) -> npt.NDArray[np.float64]:
        """Decode the ring sum of ``count`` encoded vectors back to the float sum."""
        if not 0 <= count <= self.num_clients:
            raise ParameterError(f"count must be in [0, {self.num_clients}], got {count}")
        array = np.asarray(total)
        return array.astype(np.float64) * self.step - count * self.clip

    def reduce(self, values: RingArray) -> RingArray:
        """Reduce ring integers held in a wider word modulo 2^modulus_bits, in place."""
        if self.modulus_bits < 8 * self.dtype.itemsize:
            np.bitwise_and(values, (1 << self.modulus_bits) - 1, out=values, casting="unsafe")
        return values


def _uniform01(size: int) -> npt.NDArray[np.float64]:
    """``size`` uniform floats in [0, 1) from AES-CTR under a fresh secrets key."""
    words = expand_mask(secrets.token_bytes(MASK_KEY_BYTES), size, np.uint32)
    return words.astype(np.float64) * (1.0 / 2**32)
