"""Slot layout that packs many quantized values into one Paillier plaintext.

Why this module exists: with a 2048-bit key every ciphertext costs 512 bytes and one r^n
exponentiation, so one 32-bit value per ciphertext would be hopeless for model updates of 10^5
to 10^7 values. :class:`PackingScheme` puts many non-negative quantized values into one
plaintext, each in a slot wide enough that the sum of ``num_clients`` values can never carry
into the next slot. It is an encoding, not a hazardous primitive: it only needs the bit length
of n, never a key's secret, which is why it lives outside :mod:`secagg.hazmat`
(:mod:`secagg.hazmat.paillier` re-exports it for compatibility).

Rules: after decryption every slot is range-checked (:meth:`PackingScheme.unpack`), so an
out-of-range contribution surfaces as :class:`~secagg.errors.SlotOverflowError` instead of
silently corrupting results.

What the slot check can and cannot do: a client may encrypt any plaintext, not just a packing of
in-range values, so a malicious client can always shift other clients' sums by amounts that keep
every slot legal. The check catches every aggregate that no set of honest inputs can produce
(which includes garbage plaintexts, almost surely), nothing more; proving that each client's
values are in range needs zero-knowledge range proofs, which are out of scope here.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt
import phe

from secagg.errors import ParameterError, SlotOverflowError

__all__ = ["PackingScheme", "SlotLayout"]

# Slots are handled as numpy uint64 words.
_MAX_SLOT_BITS: Final = 64


def _check_type(name: str, value: object, expected: type) -> None:
    # bool is an int subclass; a True where a count is expected is a bug, not a 1.
    if not isinstance(value, expected) or isinstance(value, bool):
        raise TypeError(f"{name} must be {expected.__name__}, not {type(value).__name__}")


class SlotLayout(enum.Enum):
    """How :class:`PackingScheme` lays slots out inside one plaintext."""

    #: Slot i occupies bits [i * slot_bits, (i + 1) * slot_bits). Packing and unpacking are pure
    #: numpy word shifts, and the unused values between a slot's largest legal sum and
    #: 2^slot_bits make random corruption very visible.
    BITS = "bits"
    #: The plaintext is a number in base ``num_clients * (2^value_bits - 1) + 1``, one digit per
    #: slot. No fractional bit per slot is wasted, so a slot costs log2 of that base instead of
    #: its ceiling (57 instead of 56 slots for 32-bit values, 10 clients, 2048-bit keys), at the
    #: price of a slower big-integer conversion and a range check that sees less.
    RADIX = "radix"


@dataclass(frozen=True)
class PackingScheme:
    """Slot layout that packs quantized non-negative values into Paillier plaintexts.

    Each value must lie in [0, 2^value_bits): signed quantities are the caller's business (the
    quantizer adds an offset and the decoder subtracts ``num_summed * offset``). A slot has
    ``headroom_bits = ceil(log2(num_clients))`` spare bits on top of ``value_bits``, so the sum of
    up to ``num_clients`` plaintexts never carries from one slot into the next. The packed
    integer stays below 2^(key_bits - 1), hence below n.

    Attributes:
        value_bits: Bits of one quantized value.
        num_clients: Most ciphertexts that will ever be summed into one aggregate.
        key_bits: Bit length of the Paillier modulus n.
        layout: :class:`SlotLayout`; BITS unless the last 2 % of wire bytes matter.
        headroom_bits: ``ceil(log2(num_clients))``.
        slot_bits: ``value_bits + headroom_bits``.
        slot_radix: Each slot's base: ``2^slot_bits`` (BITS) or ``num_clients *
            (2^value_bits - 1) + 1`` (RADIX).
        slots_per_plaintext: Values per plaintext: ``floor((key_bits - 1) / slot_bits)`` for
            BITS, the largest k with ``slot_radix^k <= 2^(key_bits - 1)`` for RADIX.
    """

    value_bits: int
    num_clients: int
    key_bits: int
    layout: SlotLayout = SlotLayout.BITS
    headroom_bits: int = field(init=False)
    slot_bits: int = field(init=False)
    slot_radix: int = field(init=False)
    slots_per_plaintext: int = field(init=False)

    def __post_init__(self) -> None:
        _check_type("value_bits", self.value_bits, int)
        _check_type("num_clients", self.num_clients, int)
        _check_type("key_bits", self.key_bits, int)
        if not isinstance(self.layout, SlotLayout):
            raise TypeError(f"layout must be SlotLayout, not {type(self.layout).__name__}")
        if self.value_bits < 1:
            raise ParameterError(f"value_bits must be at least 1, not {self.value_bits}")
        if self.num_clients < 1:
            raise ParameterError(f"num_clients must be at least 1, not {self.num_clients}")
        headroom_bits = (self.num_clients - 1).bit_length()
        slot_bits = self.value_bits + headroom_bits
        if slot_bits > _MAX_SLOT_BITS:
            raise ParameterError(
                f"a slot needs value_bits + ceil(log2(num_clients)) = {slot_bits} bits, more than "
                f"{_MAX_SLOT_BITS}: quantize to fewer value_bits or aggregate fewer clients"
            )
        if slot_bits > self.key_bits - 1:
            raise ParameterError(
                f"a {slot_bits}-bit slot does not fit a plaintext of a {self.key_bits}-bit key "
                f"(at most {self.key_bits - 1} usable bits): lower value_bits or num_clients, or "
                "use a larger key"
            )
        if self.layout is SlotLayout.BITS:
            slot_radix = 1 << slot_bits
            slots = (self.key_bits - 1) // slot_bits
        else:
            slot_radix = self.num_clients * ((1 << self.value_bits) - 1) + 1
            limit = 1 << (self.key_bits - 1)
            slots = (self.key_bits - 1) // slot_bits
            while slot_radix ** (slots + 1) <= limit:
                slots += 1
        object.__setattr__(self, "headroom_bits", headroom_bits)
        object.__setattr__(self, "slot_bits", slot_bits)
        object.__setattr__(self, "slot_radix", slot_radix)
        object.__setattr__(self, "slots_per_plaintext", slots)

    @classmethod
    def for_public_key(
        cls,
        public_key: phe.PaillierPublicKey,
        *,
        value_bits: int,
        num_clients: int,
        layout: SlotLayout = SlotLayout.BITS,
    ) -> PackingScheme:
        """Build the scheme for the modulus of ``public_key``.

        Args:
            public_key: The key whose plaintexts will hold the slots.
            value_bits: Bits of one quantized value.
            num_clients: Most ciphertexts that will be summed.
            layout: Slot layout.

        Returns:
            The packing scheme.

        Raises:
            ParameterError: The slots do not fit (the message names the fix).
        """
        if not isinstance(public_key, phe.PaillierPublicKey):
            raise TypeError(
                f"public_key must be phe.PaillierPublicKey, not {type(public_key).__name__}"
            )
        return cls(value_bits, num_clients, int(public_key.n).bit_length(), layout)

    def max_slot_sum(self, num_summed: int) -> int:
        """Largest legal slot value in a sum of ``num_summed`` packed vectors.

        Args:
            num_summed: How many packed vectors were added.

        Returns:
            ``num_summed * (2^value_bits - 1)``.

        Raises:
            ParameterError: ``num_summed`` is outside [1, num_clients] (the headroom limit).
        """
        _check_type("num_summed", num_summed, int)
        if not 1 <= num_summed <= self.num_clients:
            raise ParameterError(
                f"num_summed = {num_summed} is outside [1, {self.num_clients}]: the slots have "
                f"headroom for at most num_clients = {self.num_clients} summands; build the "
                "scheme with a larger num_clients"
            )
        return num_summed * ((1 << self.value_bits) - 1)

    def num_plaintexts(self, count: int) -> int:
        """Number of plaintexts (hence ciphertexts) that hold ``count`` values.

        Args:
            count: Number of values.

        Returns:
            ``ceil(count / slots_per_plaintext)``.
        """
        _check_type("count", count, int)
        if count < 0:
            raise ParameterError(f"count must be non-negative, not {count}")
        return -(-count // self.slots_per_plaintext)

    def pack(self, values: npt.ArrayLike) -> list[int]:
        """Pack quantized values into plaintexts, slot 0 in the least significant position.

        The last plaintext is padded with zero slots.

        Args:
            values: One-dimensional integers in [0, 2^value_bits), e.g. a uint32/uint64 array.

        Returns:
            ``num_plaintexts(len(values))`` plaintexts, each in [0, 2^(key_bits - 1)).

        Raises:
            ParameterError: A value is out of range or the input is not one-dimensional.
            TypeError: The values are not integers.
        """
        array = np.asarray(values)
        if array.ndim != 1:
            raise ParameterError(f"values must be one-dimensional, not of shape {array.shape}")
        if array.dtype.kind not in "ui" and array.size:
            raise TypeError(f"values must be integers, not {array.dtype}")
        if array.size == 0:
            return []
        if array.dtype.kind == "i" and int(array.min()) < 0:
            raise ParameterError("values must be non-negative: offset signed values first")
        if int(array.max()) >= 1 << self.value_bits:
            raise ParameterError(
                f"a value is {int(array.max())}, not below 2^value_bits = 2^{self.value_bits}"
            )
        count = array.size
        slots = self.slots_per_plaintext
        grid = np.zeros((self.num_plaintexts(count), slots), dtype=np.uint64)
        grid.reshape(-1)[:count] = array.astype(np.uint64, copy=False)
        if self.layout is SlotLayout.BITS:
            return _pack_bits(grid, self.slot_bits)
        return _pack_radix(grid, self.slot_radix)

    def unpack(
        self, plaintexts: Sequence[int], count: int, num_summed: int
    ) -> npt.NDArray[np.uint64]:
        """Unpack (summed) plaintexts and check that every slot holds a legal sum.

        Args:
            plaintexts: Decrypted plaintexts, as many as ``num_plaintexts(count)``.
            count: Number of values packed.
            num_summed: Number of packed vectors that were added (1 for a single vector).

        Returns:
            ``count`` slot sums, uint64.

        Raises:
            SlotOverflowError: A slot exceeds ``num_summed * (2^value_bits - 1)``, a padding
                slot is not zero, or a plaintext has bits beyond the last slot: some client
                encrypted something other than a packing of in-range values.
            ParameterError: ``num_summed`` exceeds the headroom (``num_clients``), or the
                number of plaintexts does not match ``count``.
            TypeError: A plaintext is not an int.
        """
        limit = self.max_slot_sum(num_summed)
        expected = self.num_plaintexts(count)
        if len(plaintexts) != expected:
            raise ParameterError(
                f"{count} values need {expected} plaintexts, but {len(plaintexts)} were given"
            )
        for plaintext in plaintexts:
            _check_type("plaintext", plaintext, int)
            if plaintext < 0:
                raise ParameterError("plaintexts must be non-negative")
        if expected == 0:
            return np.zeros(0, dtype=np.uint64)
        if self.layout is SlotLayout.BITS:
            grid = _unpack_bits(plaintexts, self.slot_bits, self.slots_per_plaintext)
        else:
            grid = _unpack_radix(plaintexts, self.slot_radix, self.slots_per_plaintext)
        flat = grid.reshape(-1)
        over = np.flatnonzero(flat > np.uint64(limit))
        if over.size:
            index = int(over[0])
            raise SlotOverflowError(
                f"slot {index} holds {int(flat[index])}, above {limit}, the largest sum of "
                f"{num_summed} values of {self.value_bits} bits"
            )
        if np.any(flat[count:]):
            raise SlotOverflowError("a padding slot after the last value is not zero")
        return flat[:count].copy()


def _slot_positions(slot_bits: int, slots: int) -> list[tuple[int, int, bool]]:
    """Per slot: (word index, bit shift within the word, whether it spills into the next word)."""
    positions = []
    for slot in range(slots):
        word, shift = divmod(slot * slot_bits, 64)
        positions.append((word, shift, shift + slot_bits > 64))
    return positions


def _pack_bits(grid: npt.NDArray[np.uint64], slot_bits: int) -> list[int]:
    rows, slots = grid.shape
    # One spare word absorbs the spill of the last slot without a bounds check.
    words_per_row = -(-(slots * slot_bits) // 64) + 1
    words = np.zeros((rows, words_per_row), dtype="<u8")
    for slot, (word, shift, spills) in enumerate(_slot_positions(slot_bits, slots)):
        column = grid[:, slot]
        words[:, word] |= column << np.uint64(shift)
        if spills:
            words[:, word + 1] |= column >> np.uint64(64 - shift)
    data = words.tobytes()
    stride = words_per_row * 8
    return [int.from_bytes(data[i * stride : (i + 1) * stride], "little") for i in range(rows)]


def _unpack_bits(plaintexts: Sequence[int], slot_bits: int, slots: int) -> npt.NDArray[np.uint64]:
    used_bits = slots * slot_bits
    for plaintext in plaintexts:
        if plaintext >> used_bits:
            raise SlotOverflowError("a plaintext has bits set above its last slot")
    words_per_row = -(-used_bits // 64) + 1
    stride = words_per_row * 8
    data = b"".join(plaintext.to_bytes(stride, "little") for plaintext in plaintexts)
    words = np.frombuffer(data, dtype="<u8").reshape(len(plaintexts), words_per_row)
    mask = np.uint64((1 << slot_bits) - 1)
    grid = np.empty((len(plaintexts), slots), dtype=np.uint64)
    for slot, (word, shift, spills) in enumerate(_slot_positions(slot_bits, slots)):
        column = words[:, word] >> np.uint64(shift)
        if spills:
            column |= words[:, word + 1] << np.uint64(64 - shift)
        grid[:, slot] = column & mask
    return grid


def _radix_powers(radix: int, slots: int) -> list[int]:
    """radix^(2^i) for every level of a balanced split of ``slots`` digits."""
    powers = [radix]
    while 1 << len(powers) < slots:
        powers.append(powers[-1] * powers[-1])
    return powers


def _pack_radix(grid: npt.NDArray[np.uint64], radix: int) -> list[int]:
    # Combine neighbouring digits pairwise, level by level (d0 + d1 B, then (d0 + d1 B) +
    # (d2 + d3 B) B^2, ...): numpy object arrays run the big-integer arithmetic in C loops.
    level = grid.astype(object)
    for power in _radix_powers(radix, grid.shape[1]):
        if level.shape[1] == 1:
            break
        if level.shape[1] % 2:
            level = np.concatenate([level, np.zeros((level.shape[0], 1), dtype=object)], axis=1)
        level = level[:, 0::2] + level[:, 1::2] * power
    return [int(value) for value in level[:, 0]]


def _unpack_radix(plaintexts: Sequence[int], radix: int, slots: int) -> npt.NDArray[np.uint64]:
    top = radix**slots
    for plaintext in plaintexts:
        if plaintext >= top:
            raise SlotOverflowError("a plaintext exceeds the largest packing of its slots")
    level = np.empty((len(plaintexts), 1), dtype=object)
    level[:, 0] = list(plaintexts)
    for power in reversed(_radix_powers(radix, slots)):
        high = level // power
        low = level - high * power
        level = np.stack([low, high], axis=2).reshape(len(plaintexts), -1)
    return np.asarray(level[:, :slots].astype(np.uint64), dtype=np.uint64)
