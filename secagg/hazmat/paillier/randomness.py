"""Randomness factors r^n mod n^2 for Paillier encryption: fresh, DJN, or precomputed.

Why this module exists: the factor r^n mod n^2 dominates the cost of a Paillier encryption, and
how it is drawn decides which hardness assumption the ciphertexts rest on.
:attr:`RandomnessMode.FRESH` draws r uniformly from Z*_n (textbook Paillier, no extra
assumption). :attr:`RandomnessMode.DJN` draws r^n = hs^a for a short random exponent a through a
fixed-base table (Damgård, Jurik, Nielsen 2010), more than ten times cheaper but resting on an
extra assumption (see :class:`~secagg.hazmat.paillier.keys.DJNParameters`). A
:class:`RandomnessPool` moves either kind of work offline and hands each factor out once.

Rules: randomness comes only from :mod:`secrets`; a factor is never handed out twice (reuse
leaks the difference of two plaintexts); ``_djn_factor_from_exponent`` is the deterministic
seam for known answers and is for tests only.
"""

from __future__ import annotations

import enum
import math
import secrets
from collections.abc import Callable, Iterable
from functools import lru_cache, partial
from typing import Final, TypeVar

import gmpy2
import phe

from secagg.errors import KeyReuseError, ParameterError
from secagg.hazmat.paillier._checks import _check_type
from secagg.hazmat.paillier._parallel import (
    _CHUNKS_PER_PROCESS,
    _map_chunks,
    _split_evenly,
    _worker_count,
)
from secagg.hazmat.paillier.keys import DJNParameters, _check_public_key, _random_unit

__all__ = ["RandomnessMode", "RandomnessPool"]

# Window of the fixed-base table for DJN: one row of 2^w powers per w-bit digit of the exponent.
# For a 2048-bit key (1024-bit exponents) w = 10 means 103 rows, about 60 MB built once per key
# in about half a second, and 103 multiplications mod n^2 per r^n; w = 8 would need 18 MB but
# 128 multiplications (measured 17 % slower), w = 12 about 200 MB for 86.
_WINDOW_BITS: Final = 10

_T = TypeVar("_T")


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


def _map_with_djn_table(
    function: Callable[[_T], list[int]],
    chunk_args: list[_T],
    workers: int,
    n: int,
    hs: int | None,
) -> list[int]:
    """:func:`_map_chunks`, with the DJN table for (n, hs) in place first when hs is given."""
    if hs is None:
        return _map_chunks(function, chunk_args, workers)
    # Built here before the workers start, so forked workers inherit it; spawned workers
    # build their own through the initializer.
    _djn_table(n, hs)
    return _map_chunks(function, chunk_args, workers, initializer=_warm_djn_table, initargs=(n, hs))


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
        factors = _map_with_djn_table(partial(_randomness_chunk, n, hs), counts, workers, n, hs)
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
