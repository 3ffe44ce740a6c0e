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

__all__ = [
    "MAX_MODULUS_BITS",
    "EncodedUpdate",
    "QuantizationScheme",
    "UpdateEncoding",
    "check_clip",
    "check_max_weight",
    "check_weight",
    "clip_update",
    "ring_dtype",
]

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
        check_clip(self.clip)
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


def clip_update(
    values: npt.NDArray[np.float64], clip: float
) -> tuple[npt.NDArray[np.float64], int]:
    """``values`` clipped to [-clip, clip], and how many of them were clipped."""
    clipped = int(np.count_nonzero(np.abs(values) > clip))
    return np.clip(values, -clip, clip), clipped


def check_clip(clip: float) -> None:
    """Reject a clipping bound that is not a positive finite number."""
    if not (math.isfinite(clip) and clip > 0):
        raise ParameterError(f"clip must be a positive finite number, got {clip}")


def check_max_weight(max_weight: float | None) -> None:
    """Reject a declared max_weight that is not ``None`` or a positive finite number."""
    if max_weight is not None and not (math.isfinite(max_weight) and max_weight > 0):
        raise ParameterError(f"max_weight must be a positive finite number, got {max_weight}")


def check_weight(weight: float, max_weight: float, *, client: object = None) -> float:
    """Return ``weight`` as a float after checking 0 <= weight <= max_weight.

    Raises:
        ParameterError: the weight is not finite, negative, or above the declared maximum.
    """
    who = "" if client is None else f" of client {client}"
    value = float(weight)
    if not math.isfinite(value) or value < 0:
        raise ParameterError(f"the weight{who} is {weight}; weights must be finite and >= 0")
    if value > max_weight:
        raise ParameterError(
            f"the weight{who} is {weight}, above the declared max_weight={max_weight:g}; "
            "declare a max_weight of at least the largest weight any client may have"
        )
    return value


@dataclass(frozen=True, slots=True)
class EncodedUpdate:
    """One client's encoded update and how many of its values were clipped (client-side)."""

    vector: npt.NDArray[np.generic]
    clipped: int


@dataclass(frozen=True, slots=True)
class UpdateEncoding:
    """The one rule for turning a (weighted) float update into ring values, and back.

    Every backend follows it, so swapping one for another never changes the answer beyond the
    quantization error. A client clips its update x itself to [-clip, clip]; with weights, the
    weight w must lie in [0, max_weight] and the client encodes (w / max_weight) * clip(x),
    which stays inside [-clip, clip], so the ring's headroom keeps the sum of n such vectors
    from wrapping. The weight itself is appended as one more coordinate, w * s rounded
    stochastically with the scale s of :attr:`weight_scale`: while max_weight fits in one
    coordinate s is an integer, so integer weights (numbers of examples) sum exactly and
    fractional ones without bias; the server learns only the summed weight.

    Attributes:
        scheme: the quantization of one coordinate.
        max_weight: the declared largest weight, or ``None`` for unweighted sums.
    """

    scheme: QuantizationScheme
    max_weight: float | None = None

    def __post_init__(self) -> None:
        check_max_weight(self.max_weight)

    @property
    def weight_scale(self) -> float:
        """s: a weight w is encoded as w * s rounded stochastically (1 when unweighted).

        s = floor((2^value_bits - 1) / max_weight), an integer, while max_weight fits in a
        coordinate, so integer weights are encoded (and summed) exactly; for a larger
        max_weight, s = (2^value_bits - 1) / max_weight < 1 and weights are only unbiased.
        """
        if self.max_weight is None:
            return 1.0
        levels = self.scheme.levels
        if self.max_weight <= levels:
            return float(levels // self.max_weight)
        return levels / self.max_weight

    @property
    def modulus_bits(self) -> int:
        """The ring Z_{2^k} the encoded values are summed in."""
        return self.scheme.modulus_bits

    @property
    def weighted(self) -> bool:
        """Whether a weight coordinate follows the update."""
        return self.max_weight is not None

    def vector_length(self, dimension: int) -> int:
        """Ring values per client for a float update of ``dimension`` values."""
        return dimension + self.weighted

    def encode(self, update: npt.NDArray[np.float64], weight: float | None = None) -> EncodedUpdate:
        """Clip, weight and quantize one client's update.

        Raises:
            ParameterError: a weight was given to an unweighted encoding (or none to a
                weighted one), or the weight is outside [0, max_weight].
        """
        clipped_update, clipped = clip_update(update, self.scheme.clip)
        if self.max_weight is None:
            if weight is not None:
                raise ParameterError("a weight was given but no max_weight was declared")
            return EncodedUpdate(self.scheme.quantize(clipped_update), clipped)
        if weight is None:
            raise ParameterError("this encoding is weighted: every client needs a weight")
        checked = check_weight(weight, self.max_weight)
        encoded_weight = _round_stochastically(checked * self.weight_scale)
        np.clip(encoded_weight, 0, self.scheme.levels, out=encoded_weight)
        scaled = (checked / self.max_weight) * clipped_update
        vector = np.concatenate(
            [self.scheme.quantize(scaled), encoded_weight.astype(self.scheme.dtype)]
        )
        return EncodedUpdate(vector, clipped)

    def decode_sum(
        self, total: npt.NDArray[np.generic], count: int
    ) -> tuple[npt.NDArray[np.float64], float | None]:
        """The float sum of ``count`` clients (weighted when weights were encoded), and the
        summed weight (``None`` when unweighted)."""
        if self.max_weight is None:
            return self.scheme.dequantize_sum(total, count), None
        values = self.scheme.dequantize_sum(total[:-1], count) * self.max_weight
        weight = float(total[-1]) / self.weight_scale
        return values, weight

    def error_bound(self, count: int) -> float:
        """The largest deviation of a decoded coordinate from the exact sum of ``count``
        clipped (and weighted) updates: one quantization step per client. The summed weight
        is off by less than ``count / weight_scale``, and is exact for integer weights when
        ``max_weight <= 2^value_bits - 1``."""
        scale = 1.0 if self.max_weight is None else self.max_weight
        return count * self.scheme.step * scale


def _round_stochastically(value: float) -> npt.NDArray[np.float64]:
    """floor(value) plus 1 with probability frac(value): unbiased, and exact for integers.

    Comparing the fraction with the uniform (rather than flooring value + u) keeps an integer
    value exact even where value + u would round up in float64 (value >= 2^21).
    """
    base = math.floor(value)
    return np.array([base + int(_uniform01(1)[0] < value - base)], dtype=np.float64)


def _uniform01(size: int) -> npt.NDArray[np.float64]:
    """``size`` uniform floats in [0, 1) from AES-CTR under a fresh secrets key."""
    words = expand_mask(secrets.token_bytes(MASK_KEY_BYTES), size, np.uint32)
    return words.astype(np.float64) * (1.0 / 2**32)
