"""Shamir t-of-n secret sharing over the prime field GF(2^256 + 297).

The field is the smallest prime field above 2^256, so any 32-byte secret (an X25519 private key
or a self-mask seed) is one field element and each share is 33 bytes. Reconstruction evaluates
the Lagrange basis at zero; the coefficients depend only on the holders' x-coordinates, so
:class:`Reconstructor` computes them once for a fixed holder set and reuses them for every secret
those holders share (the server unmasks many clients with the same survivors).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Final

import gmpy2

from secagg.errors import ParameterError, ReconstructionError

__all__ = [
    "FIELD_PRIME",
    "SHARE_BYTES",
    "Reconstructor",
    "lagrange_at_zero",
    "reconstruct",
    "secret_from_bytes",
    "secret_to_bytes",
    "share_from_bytes",
    "share_to_bytes",
    "split",
]

#: 2^256 + 297, the smallest prime above 2^256 (checked by a test with gmpy2.is_prime).
FIELD_PRIME: Final = 2**256 + 297
SHARE_BYTES: Final = 33
SECRET_BYTES: Final = 32
_P: Final = gmpy2.mpz(FIELD_PRIME)


def _check_points(xs: Sequence[int]) -> None:
    if len(set(xs)) != len(xs):
        raise ParameterError("share x-coordinates must be distinct")
    for x in xs:
        if not 0 < x < FIELD_PRIME:
            raise ParameterError(f"share x-coordinate {x} must be in [1, p)")


def split(secret: int, threshold: int, xs: Sequence[int]) -> dict[int, int]:
    """Split ``secret`` into shares at ``xs`` so that any ``threshold`` of them reconstruct it.

    Coefficients come from :mod:`secrets`. Returns x -> y.
    """
    if not 1 <= threshold <= len(xs):
        raise ParameterError(f"threshold {threshold} must be in [1, {len(xs)}] (holder count)")
    coefficients = [secrets.randbelow(FIELD_PRIME) for _ in range(threshold - 1)]
    return _split_with_coefficients(secret, coefficients, xs)


def _split_with_coefficients(
    secret: int, coefficients: Sequence[int], xs: Sequence[int]
) -> dict[int, int]:
    """Deterministic core of :func:`split`; public only to known-answer tests."""
    if not 0 <= secret < FIELD_PRIME:
        raise ParameterError("the secret must be a field element in [0, p)")
    _check_points(xs)
    poly = [gmpy2.mpz(secret), *(gmpy2.mpz(c) for c in coefficients)]
    shares: dict[int, int] = {}
    for x in xs:
        # Horner's rule, highest coefficient first.
        x_mpz = gmpy2.mpz(x)
        acc = gmpy2.mpz(0)
        for coefficient in reversed(poly):
            acc = (acc * x_mpz + coefficient) % _P
        shares[x] = int(acc)
    return shares


@lru_cache(maxsize=1024)
def lagrange_at_zero(xs: tuple[int, ...]) -> tuple[int, ...]:
    """Lagrange basis coefficients at 0 for the points ``xs`` (cached per holder set)."""
    _check_points(xs)
    coefficients = []
    for i, xi in enumerate(xs):
        numerator = gmpy2.mpz(1)
        denominator = gmpy2.mpz(1)
        for j, xj in enumerate(xs):
            if i != j:
                numerator = numerator * xj % _P
                denominator = denominator * (xj - xi) % _P
        coefficients.append(int(numerator * gmpy2.invert(denominator, _P) % _P))
    return tuple(coefficients)


class Reconstructor:
    """Reconstructs many secrets shared to the same ``threshold`` holders, reusing coefficients."""

    def __init__(self, xs: Iterable[int]) -> None:
        self.xs: tuple[int, ...] = tuple(sorted(xs))
        self._coefficients = [gmpy2.mpz(c) for c in lagrange_at_zero(self.xs)]

    def combine(self, shares: Mapping[int, int]) -> int:
        """Return the secret from the shares held at exactly this reconstructor's points."""
        try:
            ys = [shares[x] for x in self.xs]
        except KeyError as missing:
            raise ReconstructionError(f"no share at x = {missing.args[0]}") from None
        acc = gmpy2.mpz(0)
        for c, y in zip(self._coefficients, ys, strict=True):
            if not 0 <= y < FIELD_PRIME:
                raise ReconstructionError("a share lies outside the field")
            acc += c * y
        return int(acc % _P)


def reconstruct(shares: Mapping[int, int], threshold: int, *, verify: bool = False) -> int:
    """Reconstruct a secret from at least ``threshold`` shares (x -> y).

    Uses the ``threshold`` smallest x-coordinates. With ``verify``, every further share must lie
    on the same polynomial, otherwise :class:`ReconstructionError` (detects corrupted shares).
    """
    if threshold < 1:
        raise ParameterError("threshold must be >= 1")
    if len(shares) < threshold:
        raise ReconstructionError(f"{len(shares)} shares given, {threshold} needed")
    xs = sorted(shares)
    secret = Reconstructor(xs[:threshold]).combine(shares)
    if verify and len(xs) > threshold:
        for extra in xs[threshold:]:
            subset = [*xs[: threshold - 1], extra]
            if Reconstructor(subset).combine(shares) != secret:
                raise ReconstructionError("the shares are inconsistent")
    return secret


def secret_from_bytes(secret: bytes) -> int:
    """Read a 32-byte secret as a field element (big-endian)."""
    if not isinstance(secret, bytes) or len(secret) != SECRET_BYTES:
        raise ParameterError(f"secrets are {SECRET_BYTES} bytes")
    return int.from_bytes(secret, "big")


def secret_to_bytes(secret: int) -> bytes:
    """Write a reconstructed field element back as a 32-byte secret."""
    if not 0 <= secret < 2 ** (8 * SECRET_BYTES):
        raise ReconstructionError("the reconstructed value is not a 32-byte secret")
    return secret.to_bytes(SECRET_BYTES, "big")


def share_to_bytes(y: int) -> bytes:
    """Encode a share value in 33 big-endian bytes."""
    if not 0 <= y < FIELD_PRIME:
        raise ParameterError("a share value must be a field element in [0, p)")
    return y.to_bytes(SHARE_BYTES, "big")


def share_from_bytes(data: bytes) -> int:
    """Decode a 33-byte share, rejecting values outside the field."""
    if len(data) != SHARE_BYTES:
        raise ReconstructionError(f"a share is {SHARE_BYTES} bytes")
    y = int.from_bytes(data, "big")
    if y >= FIELD_PRIME:
        raise ReconstructionError("a share lies outside the field")
    return y
