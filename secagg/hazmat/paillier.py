"""Packed, gmpy2-accelerated Paillier encryption on phe's key types.

Why this module exists: phe (python-paillier) encrypts one number per ciphertext. With a 2048-bit
key every 32-bit model value then costs a 512-byte ciphertext and one r^n mod n^2 exponentiation
(about 10 ms), while a federated recommender uploads 10^5 to 10^7 values per client per round.
This module keeps phe's key classes, so keys and every single ciphertext stay interchangeable
with phe, and adds what makes Paillier usable for vectors:

1. **Packing** (:class:`PackingScheme`): many non-negative quantized values share one plaintext,
   each in a slot wide enough that the sum of ``num_clients`` values can never carry into the
   next slot. After decryption every slot is range-checked, so an out-of-range contribution
   surfaces as :class:`~secagg.errors.SlotOverflowError` instead of silently corrupting results.
2. **Cheap randomness**: the factor r^n mod n^2 dominates encryption.
   :attr:`RandomnessMode.FRESH` draws r uniformly from Z*_n (textbook Paillier, no extra
   assumption). :attr:`RandomnessMode.DJN` draws r^n = hs^a for a short random exponent a from a
   fixed-base table (Damgård, Jurik, Nielsen 2010), more than ten times cheaper but resting on
   an extra hardness assumption (see :class:`DJNParameters`). A :class:`RandomnessPool` moves
   either kind of work offline, and hands each factor out once.
3. **Speed**: gmpy2 arithmetic everywhere, CRT decryption, and a process pool for long vectors.

Rules kept throughout: g = n + 1 (phe's choice), so c = (1 + m n) r^n mod n^2 with no
exponentiation for g; randomness comes only from :mod:`secrets`; a ciphertext is a plain ``int``
in Z*_{n^2}, i.e. 0 < c < n^2 and gcd(c, n) = 1; everything received from outside is checked
before use (:func:`check_ciphertext`, :func:`ciphertexts_from_bytes`, :meth:`PackingScheme.unpack`).

What the slot check can and cannot do: a client may encrypt any plaintext, not just a packing of
in-range values, so a malicious client can always shift other clients' sums by amounts that keep
every slot legal. The check catches every aggregate that no set of honest inputs can produce
(which includes garbage plaintexts, almost surely), nothing more; proving that each client's
values are in range needs zero-knowledge range proofs, which are out of scope here.
"""

from __future__ import annotations

import enum
import math
import os
import secrets
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache, partial
from typing import Final, NamedTuple, TypeVar

import gmpy2
import numpy as np
import numpy.typing as npt
import phe

from secagg.errors import (
    InvalidCiphertextError,
    KeyReuseError,
    ParameterError,
    SlotOverflowError,
)

__all__ = [
    "SUPPORTED_KEY_BITS",
    "DJNParameters",
    "PackingScheme",
    "PaillierKeypair",
    "RandomnessMode",
    "RandomnessPool",
    "SlotLayout",
    "add_ciphertext_vectors",
    "check_ciphertext",
    "ciphertext_byte_length",
    "ciphertexts_from_bytes",
    "ciphertexts_to_bytes",
    "decrypt_vector",
    "encrypt_vector",
    "generate_keypair",
    "sum_ciphertext_vectors",
]

#: Key sizes (bits of n) that :func:`generate_keypair` accepts.
SUPPORTED_KEY_BITS: Final = frozenset({2048, 3072})

# Window of the fixed-base table for DJN: one row of 2^w powers per w-bit digit of the exponent.
# For a 2048-bit key (1024-bit exponents) w = 10 means 103 rows, about 60 MB built once per key
# in about half a second, and 103 multiplications mod n^2 per r^n; w = 8 would need 18 MB but
# 128 multiplications (measured 17 % slower), w = 12 about 200 MB for 86.
_WINDOW_BITS: Final = 10

# Below this many ciphertexts per worker, starting processes costs more than it saves.
_MIN_CIPHERTEXTS_PER_PROCESS: Final = 128
# Chunks per worker: a little more than one evens out uneven chunk run times.
_CHUNKS_PER_PROCESS: Final = 2

# Fermat factoring finds p, q quickly when |p - q| is small; demand this many top bits to differ.
_PRIME_DISTANCE_SLACK_BITS: Final = 100
_PRIMALITY_ROUNDS: Final = 64
_MIN_UNCHECKED_KEY_BITS: Final = 256

# Slots are handled as numpy uint64 words.
_MAX_SLOT_BITS: Final = 64

_T = TypeVar("_T")


def _check_type(name: str, value: object, expected: type) -> None:
    # bool is an int subclass; a True where a count is expected is a bug, not a 1.
    if not isinstance(value, expected) or isinstance(value, bool):
        raise TypeError(f"{name} must be {expected.__name__}, not {type(value).__name__}")


def _check_public_key(public_key: phe.PaillierPublicKey) -> None:
    if not isinstance(public_key, phe.PaillierPublicKey):
        raise TypeError(
            f"public_key must be phe.PaillierPublicKey, not {type(public_key).__name__}"
        )


def _check_private_key(private_key: phe.PaillierPrivateKey) -> None:
    if not isinstance(private_key, phe.PaillierPrivateKey):
        raise TypeError(
            f"private_key must be phe.PaillierPrivateKey, not {type(private_key).__name__}"
        )


def _worker_count(processes: int | None, num_ciphertexts: int) -> int:
    if processes is None:
        requested = os.cpu_count() or 1
    else:
        _check_type("processes", processes, int)
        if processes < 1:
            raise ParameterError(
                f"processes must be at least 1 (or None for every core), not {processes}"
            )
        requested = processes
    return max(1, min(requested, num_ciphertexts // _MIN_CIPHERTEXTS_PER_PROCESS))


def _split_evenly(items: Sequence[_T], parts: int) -> list[list[_T]]:
    size, extra = divmod(len(items), parts)
    chunks: list[list[_T]] = []
    start = 0
    for index in range(parts):
        stop = start + size + (1 if index < extra else 0)
        chunks.append(list(items[start:stop]))
        start = stop
    return chunks


def _map_chunks(
    function: Callable[[_T], list[int]],
    chunk_args: list[_T],
    workers: int,
    djn_table: tuple[int, int] | None = None,
) -> list[int]:
    """Apply ``function`` to each chunk argument (in worker processes if ``workers`` > 1).

    The results are concatenated in chunk order. ``function`` must be a module-level callable (or
    a :func:`functools.partial` of one) so that it pickles. ``djn_table`` = (n, hs) makes every
    worker hold that fixed-base table before its first chunk.
    """
    results: list[int] = []
    if workers <= 1:
        for argument in chunk_args:
            results.extend(function(argument))
        return results
    executor = (
        ProcessPoolExecutor(max_workers=workers)
        if djn_table is None
        else ProcessPoolExecutor(
            max_workers=workers, initializer=_warm_djn_table, initargs=djn_table
        )
    )
    with executor:
        for part in executor.map(function, chunk_args):
            results.extend(part)
    return results


# --------------------------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DJNParameters:
    """Public parameters for Damgård-Jurik-Nielsen short-exponent randomness.

    ``hs = (-x^2)^n mod n^2`` for a random unit x, published with the public key. An encryptor
    then draws the randomness factor as ``r^n = hs^a mod n^2`` for a uniformly random exponent a
    of ``exponent_bits = bits(n) // 2`` bits, through a precomputed fixed-base table, instead of
    a full exponentiation with a random r.

    Security: decryption works for any such hs, but *hiding* rests on an extra hardness
    assumption beyond Paillier's decisional composite residuosity: the short-exponent (subgroup)
    assumption of Damgård, Jurik and Nielsen ("A generalization of Paillier's public-key system
    with applications to electronic voting", Int. J. Inf. Secur. 9(6), 2010), i.e. that hs^a for
    a short random a is indistinguishable from a uniform element of the subgroup hs generates.
    The analysis requires n = p q with p ≡ q ≡ 3 (mod 4) and gcd(p - 1, q - 1) = 2, which only
    :func:`generate_keypair` guarantees; never build these parameters for a key of unknown
    origin. Use :attr:`RandomnessMode.FRESH` where only the standard assumption is acceptable.

    Attributes:
        n: The public modulus these parameters belong to.
        hs: The fixed base, an n-th power in Z*_{n^2}.
        exponent_bits: Bit length of the random exponent, ``bits(n) // 2``.
    """

    n: int
    hs: int
    exponent_bits: int = field(init=False)

    def __post_init__(self) -> None:
        _check_type("n", self.n, int)
        _check_type("hs", self.hs, int)
        if self.n < 3 or self.n % 2 == 0:
            raise ParameterError("DJN modulus n must be an odd integer above 2")
        if not 1 < self.hs < self.n * self.n or math.gcd(self.hs, self.n) != 1:
            raise ParameterError("DJN base hs must be a unit of Z*_{n^2} other than 1")
        object.__setattr__(self, "exponent_bits", self.n.bit_length() // 2)

    def matches(self, public_key: phe.PaillierPublicKey) -> bool:
        """Return whether these parameters belong to ``public_key``.

        Args:
            public_key: The key to compare with.

        Returns:
            True when both share the modulus n.
        """
        return bool(public_key.n == self.n)


class PaillierKeypair(NamedTuple):
    """What :func:`generate_keypair` returns; unpacks as ``public_key, private_key, djn``."""

    public_key: phe.PaillierPublicKey
    private_key: phe.PaillierPrivateKey
    djn: DJNParameters | None


def generate_keypair(bits: int = 2048, *, djn: bool = True) -> PaillierKeypair:
    """Generate a Paillier key pair whose primes also support DJN randomness.

    The primes p and q are drawn with :mod:`secrets` and :func:`gmpy2.next_prime`, each of
    ``bits // 2`` bits with the top two bits set (so n has exactly ``bits`` bits), with
    p ≡ q ≡ 3 (mod 4), gcd(p - 1, q - 1) = 2 and |p - q| >= 2^(bits/2 - 100).

    Args:
        bits: Bit length of n; 2048 or 3072.
        djn: Also draw the public :class:`DJNParameters`.

    Returns:
        ``PaillierKeypair(public_key, private_key, djn)`` with phe key objects; ``djn`` is None
        when not requested.

    Raises:
        ParameterError: ``bits`` is not a supported key size.
        TypeError: ``bits`` is not an int.
    """
    _check_type("bits", bits, int)
    if bits not in SUPPORTED_KEY_BITS:
        raise ParameterError(
            f"key size {bits} is not supported: use one of {sorted(SUPPORTED_KEY_BITS)}"
        )
    return _generate_keypair_unchecked_size(bits, djn=djn)


def _generate_keypair_unchecked_size(bits: int, *, djn: bool = True) -> PaillierKeypair:
    """Key generation without the key-size policy; for fast tests with small keys only."""
    if bits < _MIN_UNCHECKED_KEY_BITS or bits % 2:
        raise ParameterError(f"key size must be even and at least {_MIN_UNCHECKED_KEY_BITS}")
    half = bits // 2
    p = _random_blum_prime(half)
    while True:
        q = _random_blum_prime(half)
        if _primes_are_compatible(p, q, bits):
            break
    x = _random_unit(int(p * q)) if djn else None
    return _keypair_from_parts(int(p), int(q), djn_x=x)


def _random_blum_prime(bits: int) -> gmpy2.mpz:
    """A random prime of exactly ``bits`` bits with the top two bits set and p ≡ 3 (mod 4)."""
    top = gmpy2.mpz(3) << (bits - 2)
    while True:
        candidate = gmpy2.mpz(secrets.randbits(bits)) | top
        candidate = gmpy2.next_prime(candidate)
        while candidate % 4 != 3:
            candidate = gmpy2.next_prime(candidate)
        if candidate.bit_length() == bits and gmpy2.is_prime(candidate, _PRIMALITY_ROUNDS):
            return candidate


def _primes_are_compatible(p: gmpy2.mpz, q: gmpy2.mpz, bits: int) -> bool:
    return bool(
        p != q
        and gmpy2.gcd(p - 1, q - 1) == 2
        and (p * q).bit_length() == bits
        and abs(p - q).bit_length() > bits // 2 - _PRIME_DISTANCE_SLACK_BITS
    )


def _random_unit(n: int) -> int:
    while True:
        candidate = secrets.randbelow(n)
        if candidate > 1 and math.gcd(candidate, n) == 1:
            return candidate


def _keypair_from_parts(p: int, q: int, *, djn_x: int | None) -> PaillierKeypair:
    """Build keys from given primes (and DJN's x); the deterministic seam for known answers."""
    _check_type("p", p, int)
    _check_type("q", q, int)
    if not (gmpy2.is_prime(p, _PRIMALITY_ROUNDS) and gmpy2.is_prime(q, _PRIMALITY_ROUNDS)):
        raise ParameterError("p and q must be primes")
    if p == q or p % 4 != 3 or q % 4 != 3 or math.gcd(p - 1, q - 1) != 2:
        raise ParameterError("need distinct primes with p ≡ q ≡ 3 (mod 4) and gcd(p-1, q-1) = 2")
    if p.bit_length() != q.bit_length():
        raise ParameterError("p and q must have the same bit length")
    n = p * q
    public_key = phe.PaillierPublicKey(n)
    private_key = phe.PaillierPrivateKey(public_key, p, q)
    djn = None if djn_x is None else _djn_parameters_from_parts(public_key, djn_x)
    return PaillierKeypair(public_key, private_key, djn)


def _djn_parameters_from_parts(public_key: phe.PaillierPublicKey, x: int) -> DJNParameters:
    """hs = (-x^2)^n mod n^2 for a given x; the deterministic seam behind key generation."""
    n = int(public_key.n)
    if not 1 < x < n or math.gcd(x, n) != 1:
        raise ParameterError("DJN's x must be a unit of Z*_n other than 1")
    base = gmpy2.mpz(-x * x) % n
    return DJNParameters(n=n, hs=int(gmpy2.powmod(base, n, n * n)))


# --------------------------------------------------------------------------------------------
# Packing
# --------------------------------------------------------------------------------------------


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
        _check_public_key(public_key)
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


# --------------------------------------------------------------------------------------------
# Randomness
# --------------------------------------------------------------------------------------------


class RandomnessMode(enum.Enum):
    """Where the factor r^n mod n^2 of a ciphertext comes from."""

    #: r uniform in Z*_n from :mod:`secrets`, r^n by exponentiation: textbook Paillier.
    FRESH = "fresh"
    #: r^n = hs^a with a short random a (see :class:`DJNParameters` for the extra assumption).
    DJN = "djn"


class _FixedBaseTable:
    """rows[i][j] = hs^(j * 2^(w i)) mod n^2 for window w, so hs^a is one product over a's digits.

    Fixed-base windowing in its simplest form: a full row of powers per digit position, so no
    squarings at all and one multiplication mod n^2 per w-bit digit of the exponent.
    """

    def __init__(self, n: int, hs: int) -> None:
        self.modulus = gmpy2.mpz(n) * n
        self.exponent_bits = n.bit_length() // 2
        rows: list[list[gmpy2.mpz]] = []
        base = gmpy2.mpz(hs)
        for first_bit in range(0, self.exponent_bits, _WINDOW_BITS):
            # The last row only needs as many entries as its digit has values.
            row_size = 1 << min(_WINDOW_BITS, self.exponent_bits - first_bit)
            row = [gmpy2.mpz(1), base]
            for _ in range(2, row_size):
                row.append(row[-1] * base % self.modulus)
            rows.append(row)
            # The next row's base: base^(2^w) = base^(2^w - 1) * base.
            base = row[-1] * base % self.modulus
        self.rows = rows

    def power(self, exponent: int) -> gmpy2.mpz:
        """hs^exponent mod n^2 for 0 <= exponent < 2^exponent_bits."""
        modulus = self.modulus
        mask = (1 << _WINDOW_BITS) - 1
        accumulator = gmpy2.mpz(1)
        for row in self.rows:
            digit = exponent & mask
            if digit:
                accumulator = accumulator * row[digit] % modulus
            exponent >>= _WINDOW_BITS
        return accumulator

    def random_power(self) -> gmpy2.mpz:
        """hs^a for a uniformly random a of ``exponent_bits`` bits from :mod:`secrets`."""
        return self.power(secrets.randbits(self.exponent_bits))


# Each table is large (see _WINDOW_BITS): keep only the last two keys' tables.
@lru_cache(maxsize=2)
def _djn_table(n: int, hs: int) -> _FixedBaseTable:
    return _FixedBaseTable(n, hs)


def _warm_djn_table(n: int, hs: int) -> None:
    """Process-pool initializer: build the table once per worker (a no-op after fork)."""
    _djn_table(n, hs)


def _djn_factor_from_exponent(djn: DJNParameters, exponent: int) -> int:
    """hs^exponent mod n^2 through the table; the deterministic seam for known answers."""
    table = _djn_table(djn.n, djn.hs)
    if not 0 <= exponent < 1 << table.exponent_bits:
        raise ParameterError("DJN exponent out of range")
    return int(table.power(exponent))


def _randomness_factors(n: int, hs: int | None, count: int) -> list[gmpy2.mpz]:
    """``count`` fresh factors r^n mod n^2: by exponentiation (hs None) or from the DJN table."""
    if hs is not None:
        table = _djn_table(n, hs)
        return [table.random_power() for _ in range(count)]
    n_mpz = gmpy2.mpz(n)
    modulus = n_mpz * n_mpz
    factors = []
    for _ in range(count):
        r = _random_unit(n)
        factors.append(gmpy2.powmod(r, n_mpz, modulus))
    return factors


def _randomness_chunk(n: int, hs: int | None, count: int) -> list[int]:
    return [int(factor) for factor in _randomness_factors(n, hs, count)]


def _resolve_djn(
    public_key: phe.PaillierPublicKey, mode: RandomnessMode, djn: DJNParameters | None
) -> int | None:
    """The DJN base to use, or None for fresh randomness; checks that mode and djn agree."""
    if not isinstance(mode, RandomnessMode):
        raise TypeError(f"mode must be RandomnessMode, not {type(mode).__name__}")
    if mode is RandomnessMode.FRESH:
        if djn is not None:
            raise ParameterError("djn parameters were given but mode is FRESH: pass mode=DJN")
        return None
    if djn is None:
        raise ParameterError("mode DJN needs the key's DJNParameters (from generate_keypair)")
    if not isinstance(djn, DJNParameters):
        raise TypeError(f"djn must be DJNParameters, not {type(djn).__name__}")
    if not djn.matches(public_key):
        raise ParameterError("the DJN parameters belong to a different public key")
    return djn.hs


class RandomnessPool:
    """Precomputed randomness factors r^n mod n^2, each handed out at most once.

    Reusing a factor for two plaintexts would leak their difference (c1 / c2 encrypts m1 - m2),
    so :meth:`take` pops factors and the pool remembers every factor it ever held: adding one
    twice, or one it already gave out, raises :class:`~secagg.errors.KeyReuseError`. The pool
    cannot see copies of its factors held elsewhere; keep a pool's factors in that pool only.
    Not thread-safe.

    Example::

        pool = RandomnessPool.generate(public_key, 100, mode=RandomnessMode.DJN, djn=djn)
        ciphertexts = encrypt_vector(public_key, plaintexts, pool=pool)  # 100 plaintexts at most
    """

    def __init__(self, public_key: phe.PaillierPublicKey, factors: Iterable[int] = ()) -> None:
        """Create a pool, optionally filled with factors computed elsewhere.

        Args:
            public_key: The key the factors belong to.
            factors: Randomness factors r^n mod n^2, each a unit of Z*_{n^2}.

        Raises:
            KeyReuseError: A factor appears twice.
            ParameterError: A factor is not a unit of Z*_{n^2}.
        """
        _check_public_key(public_key)
        self._public_key = public_key
        self._available: list[int] = []
        self._seen: set[int] = set()
        self.add(factors)

    @classmethod
    def generate(
        cls,
        public_key: phe.PaillierPublicKey,
        count: int,
        *,
        mode: RandomnessMode = RandomnessMode.FRESH,
        djn: DJNParameters | None = None,
        processes: int | None = None,
    ) -> RandomnessPool:
        """Precompute ``count`` factors (the offline phase).

        Args:
            public_key: The key to encrypt under later.
            count: Number of factors, one per future ciphertext.
            mode: How to draw each factor.
            djn: The key's DJN parameters; required for mode DJN.
            processes: Worker processes; None uses every core, 1 stays in this process.

        Returns:
            A filled pool.

        Raises:
            ParameterError: Bad count, processes, or mode/djn combination.
        """
        _check_public_key(public_key)
        _check_type("count", count, int)
        if count < 0:
            raise ParameterError(f"count must be non-negative, not {count}")
        hs = _resolve_djn(public_key, mode, djn)
        n = int(public_key.n)
        workers = _worker_count(processes, count)
        counts = [len(part) for part in _split_evenly(range(count), workers * _CHUNKS_PER_PROCESS)]
        if hs is not None:
            # Built here before the workers start, so forked workers inherit it.
            _djn_table(n, hs)
        factors = _map_chunks(
            partial(_randomness_chunk, n, hs), counts, workers, None if hs is None else (n, hs)
        )
        return cls(public_key, factors)

    @property
    def public_key(self) -> phe.PaillierPublicKey:
        """The key the factors belong to."""
        return self._public_key

    def __len__(self) -> int:
        """Number of factors not yet handed out."""
        return len(self._available)

    def add(self, factors: Iterable[int]) -> None:
        """Add precomputed factors.

        Args:
            factors: Randomness factors r^n mod n^2.

        Raises:
            KeyReuseError: A factor is already in the pool or was handed out before.
            ParameterError: A factor is not a unit of Z*_{n^2}.
        """
        n = int(self._public_key.n)
        modulus = n * n
        new: list[int] = []
        new_set: set[int] = set()
        # Check everything before changing anything, so a rejected batch leaves no trace.
        for factor in factors:
            _check_type("factor", factor, int)
            if not 0 < factor < modulus or math.gcd(factor, n) != 1:
                raise ParameterError("a randomness factor must be a unit of Z*_{n^2}")
            if factor in self._seen or factor in new_set:
                raise KeyReuseError("this randomness factor was already held by the pool")
            new_set.add(factor)
            new.append(factor)
        self._seen.update(new_set)
        self._available.extend(new)

    def take(self, count: int) -> list[int]:
        """Hand out ``count`` factors, removing them from the pool for good.

        Args:
            count: Number of factors wanted.

        Returns:
            The factors.

        Raises:
            ParameterError: Fewer than ``count`` factors remain (generate more).
        """
        _check_type("count", count, int)
        if not 0 <= count <= len(self._available):
            raise ParameterError(
                f"asked for {count} randomness factors but {len(self._available)} remain: "
                "generate a larger pool"
            )
        taken = self._available[len(self._available) - count :]
        del self._available[len(self._available) - count :]
        return taken


# --------------------------------------------------------------------------------------------
# Encryption, aggregation, decryption
# --------------------------------------------------------------------------------------------


def _encrypt_from_parts(
    public_key: phe.PaillierPublicKey, plaintext: int, randomness_factor: int
) -> int:
    """c = (1 + m n) * r^n mod n^2 for a given r^n; the deterministic seam for known answers."""
    n = gmpy2.mpz(public_key.n)
    return int((1 + plaintext * n) * gmpy2.mpz(randomness_factor) % (n * n))


def _encrypt_with_factors(n: int, plaintexts: Sequence[int], factors: Sequence[int]) -> list[int]:
    n_mpz = gmpy2.mpz(n)
    modulus = n_mpz * n_mpz
    # m < n, so 1 + m n < n^2 already: no reduction before the multiplication.
    return [
        int((1 + plaintext * n_mpz) * factor % modulus)
        for plaintext, factor in zip(plaintexts, factors, strict=True)
    ]


def _encrypt_chunk(n: int, hs: int | None, plaintexts: list[int]) -> list[int]:
    return _encrypt_with_factors(n, plaintexts, _randomness_factors(n, hs, len(plaintexts)))


def encrypt_vector(
    public_key: phe.PaillierPublicKey,
    plaintexts: Sequence[int],
    *,
    mode: RandomnessMode = RandomnessMode.FRESH,
    djn: DJNParameters | None = None,
    pool: RandomnessPool | None = None,
    processes: int | None = None,
) -> list[int]:
    """Encrypt each plaintext (usually from :meth:`PackingScheme.pack`) with g = n + 1.

    Needs only the public key. Each ciphertext is ``(1 + m n) * r^n mod n^2``, exactly what
    phe's ``raw_encrypt`` computes, so phe decrypts it.

    Args:
        public_key: The encryption key.
        plaintexts: Integers in [0, n).
        mode: :attr:`RandomnessMode.FRESH` (default, standard assumption) or
            :attr:`RandomnessMode.DJN` (much faster, extra assumption; needs ``djn``).
        djn: The key's DJN parameters, for mode DJN only.
        pool: Take precomputed factors from this pool instead of drawing them; mode and djn
            must then be left at their defaults (the pool was generated with its own).
        processes: Worker processes for long vectors; None uses every core, 1 stays serial.

    Returns:
        One ciphertext per plaintext.

    Raises:
        ParameterError: A plaintext is out of range, the mode/djn/pool combination is
            inconsistent, or the pool has too few factors.
        TypeError: A plaintext is not an int.
    """
    _check_public_key(public_key)
    n = int(public_key.n)
    for plaintext in plaintexts:
        _check_type("plaintext", plaintext, int)
        if not 0 <= plaintext < n:
            raise ParameterError("plaintexts must lie in [0, n)")
    if pool is not None:
        if mode is not RandomnessMode.FRESH or djn is not None:
            raise ParameterError(
                "a pool's factors were drawn by RandomnessPool.generate: pass mode and djn "
                "there, not together with pool"
            )
        if not isinstance(pool, RandomnessPool):
            raise TypeError(f"pool must be RandomnessPool, not {type(pool).__name__}")
        if pool.public_key.n != n:
            raise ParameterError("the randomness pool belongs to a different public key")
        return _encrypt_with_factors(n, plaintexts, pool.take(len(plaintexts)))
    hs = _resolve_djn(public_key, mode, djn)
    workers = _worker_count(processes, len(plaintexts))
    if hs is not None:
        # Built here before the workers start, so forked workers inherit it.
        _djn_table(n, hs)
    chunks = _split_evenly(plaintexts, workers * _CHUNKS_PER_PROCESS if workers > 1 else 1)
    return _map_chunks(
        partial(_encrypt_chunk, n, hs), chunks, workers, None if hs is None else (n, hs)
    )


def check_ciphertext(public_key: phe.PaillierPublicKey, ciphertext: int) -> None:
    """Check that ``ciphertext`` is an element of Z*_{n^2}.

    Args:
        public_key: The key the ciphertext claims to be under.
        ciphertext: The ciphertext.

    Raises:
        InvalidCiphertextError: It is not in (0, n^2) or shares a factor with n.
        TypeError: It is not an int.
    """
    _check_public_key(public_key)
    _check_type("ciphertext", ciphertext, int)
    n = public_key.n
    if not 0 < ciphertext < public_key.nsquare or gmpy2.gcd(ciphertext, n) != 1:
        raise InvalidCiphertextError("invalid Paillier ciphertext")


def add_ciphertext_vectors(
    public_key: phe.PaillierPublicKey, a: Sequence[int], b: Sequence[int]
) -> list[int]:
    """Homomorphically add two ciphertext vectors position by position.

    Inputs are trusted to be valid ciphertexts (decode them with :func:`ciphertexts_from_bytes`);
    they are not re-checked here, which keeps the server at one multiplication per value.

    Args:
        public_key: The key both vectors are under.
        a: Ciphertexts.
        b: Ciphertexts, as many as ``a``.

    Returns:
        ``a[i] * b[i] mod n^2`` for each i, which decrypts to the sum of the plaintexts mod n.

    Raises:
        ParameterError: The vectors differ in length.
    """
    return sum_ciphertext_vectors(public_key, [a, b])


def sum_ciphertext_vectors(
    public_key: phe.PaillierPublicKey, vectors: Sequence[Sequence[int]]
) -> list[int]:
    """Homomorphically add any number of ciphertext vectors position by position.

    The running products stay gmpy2 integers until the end, one multiplication and one
    reduction mod n^2 per ciphertext. Inputs are trusted (see :func:`add_ciphertext_vectors`).

    Args:
        public_key: The key all vectors are under.
        vectors: At least one ciphertext vector, all of one length.

    Returns:
        The position-wise product mod n^2, which decrypts to the position-wise plaintext sum.

    Raises:
        ParameterError: No vectors, or vectors of different lengths.
    """
    _check_public_key(public_key)
    if not vectors:
        raise ParameterError("need at least one ciphertext vector to sum")
    length = len(vectors[0])
    for vector in vectors:
        if len(vector) != length:
            raise ParameterError(f"ciphertext vectors differ in length ({len(vector)} != {length})")
    modulus = gmpy2.mpz(public_key.nsquare)
    accumulator = [gmpy2.mpz(c) for c in vectors[0]]
    for vector in vectors[1:]:
        accumulator = [acc * c % modulus for acc, c in zip(accumulator, vector, strict=True)]
    return [int(c) for c in accumulator]


class _CRTKey(NamedTuple):
    """Decryption constants, computed as phe does (p < q, Paillier 1999 section 7).

    Deliberately not cached: a module-level cache would keep secret primes alive.
    """

    p: gmpy2.mpz
    q: gmpy2.mpz
    p_square: gmpy2.mpz
    q_square: gmpy2.mpz
    hp: gmpy2.mpz
    hq: gmpy2.mpz
    p_inverse: gmpy2.mpz


def _crt_key(p: int, q: int) -> _CRTKey:
    p_mpz, q_mpz = gmpy2.mpz(min(p, q)), gmpy2.mpz(max(p, q))
    g = p_mpz * q_mpz + 1
    p_square, q_square = p_mpz * p_mpz, q_mpz * q_mpz
    hp = gmpy2.invert((gmpy2.powmod(g, p_mpz - 1, p_square) - 1) // p_mpz, p_mpz)
    hq = gmpy2.invert((gmpy2.powmod(g, q_mpz - 1, q_square) - 1) // q_mpz, q_mpz)
    return _CRTKey(p_mpz, q_mpz, p_square, q_square, hp, hq, gmpy2.invert(p_mpz, q_mpz))


def _decrypt_chunk(p: int, q: int, ciphertexts: list[int]) -> list[int]:
    key = _crt_key(p, q)
    p_, q_, p_square, q_square = key.p, key.q, key.p_square, key.q_square
    p_minus_1, q_minus_1 = p_ - 1, q_ - 1
    plaintexts = []
    for ciphertext in ciphertexts:
        # m mod p = L_p(c^(p-1) mod p^2) * hp mod p, with L_p(x) = (x - 1) / p; same for q.
        mp = (gmpy2.powmod(ciphertext, p_minus_1, p_square) - 1) // p_ * key.hp % p_
        mq = (gmpy2.powmod(ciphertext, q_minus_1, q_square) - 1) // q_ * key.hq % q_
        plaintexts.append(int(mp + (mq - mp) * key.p_inverse % q_ * p_))
    return plaintexts


def decrypt_vector(
    private_key: phe.PaillierPrivateKey,
    ciphertexts: Sequence[int],
    *,
    processes: int | None = None,
) -> list[int]:
    """Decrypt each ciphertext with the Chinese remainder theorem.

    Gives exactly what phe's ``PaillierPrivateKey.raw_decrypt`` gives, at gmpy2 speed.

    Args:
        private_key: The decryption key.
        ciphertexts: Ciphertexts under ``private_key.public_key``.
        processes: Worker processes for long vectors; None uses every core, 1 stays serial.

    Returns:
        One plaintext in [0, n) per ciphertext.

    Raises:
        InvalidCiphertextError: A ciphertext is not an element of Z*_{n^2}.
        TypeError: A ciphertext is not an int.
    """
    _check_private_key(private_key)
    public_key = private_key.public_key
    for ciphertext in ciphertexts:
        check_ciphertext(public_key, ciphertext)
    p, q = int(private_key.p), int(private_key.q)
    workers = _worker_count(processes, len(ciphertexts))
    chunks = _split_evenly(ciphertexts, workers * _CHUNKS_PER_PROCESS if workers > 1 else 1)
    return _map_chunks(partial(_decrypt_chunk, p, q), chunks, workers)


# --------------------------------------------------------------------------------------------
# Serialization
# --------------------------------------------------------------------------------------------


def ciphertext_byte_length(public_key: phe.PaillierPublicKey) -> int:
    """Bytes of one serialized ciphertext: ``ceil(2 * bits(n) / 8)`` (512 for 2048-bit keys).

    Args:
        public_key: The key.

    Returns:
        The fixed width.
    """
    _check_public_key(public_key)
    return (2 * int(public_key.n).bit_length() + 7) // 8


def ciphertexts_to_bytes(public_key: phe.PaillierPublicKey, ciphertexts: Sequence[int]) -> bytes:
    """Serialize ciphertexts as concatenated fixed-width big-endian integers.

    Args:
        public_key: The key the ciphertexts are under.
        ciphertexts: Ciphertexts.

    Returns:
        ``len(ciphertexts) * ciphertext_byte_length(public_key)`` bytes.

    Raises:
        InvalidCiphertextError: A value is not in (0, n^2).
        TypeError: A value is not an int.
    """
    width = ciphertext_byte_length(public_key)
    modulus = public_key.nsquare
    for ciphertext in ciphertexts:
        _check_type("ciphertext", ciphertext, int)
        if not 0 < ciphertext < modulus:
            raise InvalidCiphertextError("invalid Paillier ciphertext")
    return b"".join(ciphertext.to_bytes(width, "big") for ciphertext in ciphertexts)


def ciphertexts_from_bytes(
    public_key: phe.PaillierPublicKey, data: bytes, *, check_units: bool = True
) -> list[int]:
    """Parse :func:`ciphertexts_to_bytes` output, checking every ciphertext.

    Args:
        public_key: The key the ciphertexts must be under.
        data: The bytes.
        check_units: Also check gcd(c, n) = 1 for each ciphertext (about 3 modular
            multiplications' worth of time each). A server that only multiplies may pass False:
            a non-unit factor makes the aggregate a non-unit, which :func:`decrypt_vector`
            rejects, and only someone who knows the factorization of n can produce one.

    Returns:
        The ciphertexts.

    Raises:
        InvalidCiphertextError: The length is not a multiple of the width, or a value is not in
            Z*_{n^2} (not in (0, n^2) when ``check_units`` is False).
        TypeError: ``data`` is not bytes-like.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, not {type(data).__name__}")
    width = ciphertext_byte_length(public_key)
    view = memoryview(data)
    if len(view) % width:
        raise InvalidCiphertextError("invalid Paillier ciphertext encoding")
    modulus = public_key.nsquare
    n = public_key.n
    ciphertexts = []
    for start in range(0, len(view), width):
        ciphertext = int.from_bytes(view[start : start + width], "big")
        if not 0 < ciphertext < modulus or (check_units and gmpy2.gcd(ciphertext, n) != 1):
            raise InvalidCiphertextError("invalid Paillier ciphertext")
        ciphertexts.append(ciphertext)
    return ciphertexts
