"""Paillier key pairs whose primes also fit Damgård-Jurik-Nielsen randomness.

Why this module exists: a key is where every Paillier guarantee starts. Key generation draws
p and q with :mod:`secrets` and enforces, in one place, the conditions the rest of the package
relies on: n of exactly 2048 or 3072 bits (:data:`SUPPORTED_KEY_BITS`), p ≡ q ≡ 3 (mod 4) and
gcd(p - 1, q - 1) = 2 (needed by the DJN analysis, see :class:`DJNParameters`), and |p - q| far
from small (against Fermat factoring). The keys are phe's own classes, so keys and single
ciphertexts stay interchangeable with phe.

Rules: only :func:`generate_keypair` makes keys with the size policy; the private seams
``_generate_keypair_unchecked_size`` (small keys for fast tests) and ``_keypair_from_parts``
(fixed primes for known answers) exist for tests only. The argument checks
``_check_public_key`` and ``_check_private_key`` live here for every other Paillier module.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field
from typing import Final, NamedTuple

import gmpy2
import phe

from secagg.errors import ParameterError
from secagg.hazmat.paillier._checks import _check_type

__all__ = [
    "SUPPORTED_KEY_BITS",
    "DJNParameters",
    "PaillierKeypair",
    "generate_keypair",
]

#: Key sizes (bits of n) that :func:`generate_keypair` accepts.
SUPPORTED_KEY_BITS: Final = frozenset({2048, 3072})

# Fermat factoring finds p, q quickly when |p - q| is small; demand this many top bits to differ.
_PRIME_DISTANCE_SLACK_BITS: Final = 100
_PRIMALITY_ROUNDS: Final = 64
_MIN_UNCHECKED_KEY_BITS: Final = 256


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
        # hs = (-x^2)^n is a square mod n with Jacobi symbol +1 (n is a Blum integer). A base
        # that is +-1 mod n, such as 1 + n, would let anyone read the high bits of a plaintext
        # from c mod n^2: refused, in case a tampered public key file carries one.
        if self.hs % self.n in (1, self.n - 1) or gmpy2.jacobi(self.hs, self.n) != 1:
            raise ParameterError("DJN base hs is not of the form (-x^2)^n mod n^2")
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
